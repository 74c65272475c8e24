"""The pipeline's health as Airflow and the CLI show it: image counts, queue depths, the
oldest pending image, and the ingest DLQ's redrive."""
