"""`imgsim`: the pipeline from a terminal (the local stack, uploads, lookups, campaigns,
health). Exit codes are in `errors`."""
