"""Keeping the vector index derived from the shards: which (prompt, model)s get an index
(`plan`), and building and syncing their tables (`sync`)."""
