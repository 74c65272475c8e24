"""Ingest flow: an S3 object-created notification -> a validated Images record -> an embed
request."""
