"""SageMaker emulator for the local stack: the SageMaker and sagemaker-runtime JSON protocols
for models, batch transform jobs and endpoints, running the real sagemaker_jobs code.
A stand-in for SageMaker: it runs jobs in threads of its own process, not in containers."""
