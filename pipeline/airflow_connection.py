"""Settings for code running inside Airflow tasks: names from the environment; the boto3 session
(the connection's keys, assumed role or profile), region and endpoints (`endpoint_url` and
per-service `service_config`) from the Airflow AWS connection, the way the provider's own hooks
get to AWS. A DAG never knows whether it talks to AWS or to the local stack."""

from __future__ import annotations

from dataclasses import replace

from pipeline.settings import ENDPOINT_VARIABLES, Settings


def settings_from_connection(aws_conn_id: str | None, base: Settings | None = None) -> Settings:
    """`base` (default: the environment) with the connection's session, region and endpoints.
    No connection id means boto3's default chain, as in the provider's hooks."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    base = base or Settings.from_env()
    if not aws_conn_id:
        return base
    hook = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="s3")
    config = hook.conn_config
    region = config.region_name or base.region
    endpoints = dict(base.endpoints)
    for service in ENDPOINT_VARIABLES:
        url = config.get_service_endpoint_url(service_name=service)
        if url:
            endpoints[service] = url
    return replace(
        base, region=region, endpoints=endpoints, session=hook.get_session(region_name=region)
    )
