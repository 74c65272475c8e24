"""Inference code packed into model.tar.gz under code/ (SageMaker puts code/ on sys.path)."""
