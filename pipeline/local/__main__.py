"""`python -m pipeline.local deploy|services|airflow`: the stack's parts in the foreground, for
the compose file's containers (which install no cli extra). People type
`imgsim up|down|status|env|demo` (pipeline.cli)."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from pipeline import aws
from pipeline.aws_build import REPO_ROOT
from pipeline.local.airflow_standalone import airflow_env
from pipeline.local.config import LocalConfig
from pipeline.local.deploy import StackSpec, deploy
from pipeline.local.embed_endpoint import ensure_endpoint
from pipeline.local.lambda_host import LambdaHost
from pipeline.local.loopback import run_until_signalled
from pipeline.local.model_artifact import ensure_model
from pipeline.settings import Settings


def _serve(host: str, port: int) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger("pipeline").addHandler(handler)
    logging.getLogger("pipeline").setLevel(logging.INFO)
    services = LambdaHost.create(Settings.from_env(), api_host=host, api_port=port).start()
    run_until_signalled(services.stop)


def _deploy_to_endpoint(config: LocalConfig) -> None:
    settings = Settings.from_env()
    if not settings.endpoint("cloudformation"):
        raise SystemExit(
            "deploy is for a local endpoint: set AWS_ENDPOINT_URL. For AWS use "
            "`aws cloudformation deploy` (see docs/deploy.md)."
        )
    deploy(settings, StackSpec(name=config.stack_name, code_bucket=f"{settings.bucket}-code"))
    print(f"deployed {config.stack_name} to {settings.endpoint('cloudformation')}")
    # As `up` does: the model, then the embedding endpoint, when the SageMaker emulator is named
    # on its own (moto's SageMaker behind a general AWS_ENDPOINT_URL records but never serves).
    if os.environ.get("AWS_ENDPOINT_URL_SAGEMAKER"):
        model_data_url = ensure_model(settings, config.model)
        ensure_endpoint(settings, model_data_url)
        print(f"endpoint {settings.embed_endpoint} serves {model_data_url}")


def _airflow(config: LocalConfig, host: str, port: int) -> None:
    """`airflow standalone` in the foreground with the environment `up` gives it (the compose
    file's airflow service): endpoints from AWS_ENDPOINT_URL_*, the stack already deployed."""
    settings = Settings.from_env()
    queue_url = aws.client(settings, "sqs").get_queue_url(QueueName=settings.embed_queue)
    env = airflow_env(
        Path(os.environ.get("AIRFLOW_HOME", config.state_dir / "airflow")),
        port,
        REPO_ROOT / "dags",
        settings,
        settings.endpoint("s3") or "",
        settings.endpoint("sagemaker") or "",
        settings.endpoint("bedrock-runtime") or "",
        queue_url["QueueUrl"],
        ensure_model(settings, config.model),
    )
    env["AIRFLOW__API__HOST"] = host
    airflow = str(Path(sys.executable).parent / "airflow")
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([airflow, "db", "migrate"], env=env, check=True)
    pool = [airflow, "pools", "set", "bedrock", "2", "Bedrock InvokeModel"]
    subprocess.run(pool, env=env, check=True)
    os.execve(airflow, [airflow, "standalone"], env)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "deploy",
        help="deploy infra/template.yaml to the endpoint in "
        "AWS_ENDPOINT_URL (a moto server you run yourself, e.g. docker compose)",
    )
    services = sub.add_parser(
        "services",
        help="run the event pump and the API in the "
        "foreground against the endpoints in the environment",
    )
    services.add_argument("--host", default="127.0.0.1")
    services.add_argument("--port", type=int, default=8000)
    airflow = sub.add_parser(
        "airflow",
        help="run Airflow standalone in the foreground against the endpoints in the "
        "environment, configured as `up` configures it (after `deploy`)",
    )
    airflow.add_argument("--host", default="127.0.0.1")
    airflow.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)

    config = LocalConfig.from_env()
    if args.command == "services":
        _serve(args.host, args.port)
    elif args.command == "deploy":
        _deploy_to_endpoint(config)
    else:
        _airflow(config, args.host, args.port)


if __name__ == "__main__":
    main()
