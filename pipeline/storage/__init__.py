"""Where state lives: the bucket, the Images, Embeddings and ShardManifests tables, the embed
queue, the Parquet shards, and `keys`, the one module that knows every S3 key layout."""
