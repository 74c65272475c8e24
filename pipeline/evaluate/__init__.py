"""Retrieval quality of an embedding model on a labelled image set: index 80 %, query with
20 % (seeded, stratified), report hit@1/5/10 and precision@10, in-process over model artifacts
or through a running stack's API (`python -m pipeline.evaluate`)."""
