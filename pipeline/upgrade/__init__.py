"""Model upgrade without downtime: re-embed every embedded image with a new model artifact
beside the old vectors (`backfill`, in batches through the same batch transform as embedding
runs), switch each prompt's active-model pointer once its backfill is complete (`switch`), and
remove a retired model's shards and vectors (`retire`, typed as `imgsim model retire`)."""
