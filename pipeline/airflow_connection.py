"""Settings for code running inside Airflow tasks: names from the environment, endpoints from
the Airflow AWS connection (its `endpoint_url` and per-service `service_config`), so a DAG
never knows whether it talks to AWS or to the local stack."""

from __future__ import annotations

from dataclasses import replace

from pipeline.settings import ENDPOINT_VARIABLES, Settings


def settings_from_connection(aws_conn_id: str | None, base: Settings | None = None) -> Settings:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    base = base or Settings.from_env()
    if not aws_conn_id:
        return base
    config = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="s3").conn_config
    endpoints = dict(base.endpoints)
    for service in ENDPOINT_VARIABLES:
        url = config.get_service_endpoint_url(service_name=service)
        if url:
            endpoints[service] = url
    return replace(base, region=config.region_name or base.region, endpoints=endpoints)
