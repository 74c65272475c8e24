"""RDS Data API emulator for the local stack: ExecuteStatement, BatchExecuteStatement and the
transaction calls (the rds-data REST-JSON protocol) in front of the local PostgreSQL + pgvector,
so the code that reaches Aurora through the Data API on AWS runs unchanged here."""
