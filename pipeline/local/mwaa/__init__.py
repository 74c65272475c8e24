"""MWAA emulator for the local stack: InvokeRestApi (POST /restapi/{Name}, restJson) in front of
the local Airflow's REST API, so the operator's tools take the same IAM-signed path as on AWS.
A stand-in for MWAA's front end only: it creates no environments."""
