"""An image's life after ingest: deletion everywhere it reached, and duplicates."""
