"""Lookup flow: exact cosine top-k over a prompt's shards, and queries embedded on demand."""
