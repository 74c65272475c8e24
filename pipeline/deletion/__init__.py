"""Deleting an image everywhere it reached (`deleter`), in any order S3's events arrive
(`sequencers`)."""
