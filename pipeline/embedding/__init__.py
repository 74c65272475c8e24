"""Embedding flow: embed requests -> a SageMaker batch transform run -> Parquet shards, Embeddings
items and manifests; and the compaction of a prompt's small shards."""
