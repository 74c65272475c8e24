"""SageMaker jobs: the batch-transform inference code and its model artifact builder."""
