"""python -m pipeline.local up|down|status|env|demo (and `services`, which `up` starts)."""

from __future__ import annotations

import argparse
import json
import logging

from pipeline.local import demo, stack
from pipeline.local.config import LOCAL_CREDENTIALS, LocalConfig, local_settings
from pipeline.local.deploy import StackSpec, deploy
from pipeline.local.lambda_host import LambdaHost
from pipeline.local.loopback import run_until_signalled
from pipeline.settings import Settings


def _env_lines(config: LocalConfig) -> str:
    settings = local_settings(config)
    env = {**settings.to_env(), **LOCAL_CREDENTIALS, "IMGSIM_API_URL": config.api_url}
    return "\n".join(f"export {k}={v}" for k, v in sorted(env.items()))


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
            "`aws cloudformation deploy` (see README)."
        )
    deploy(settings, StackSpec(name=config.stack_name, code_bucket=f"{settings.bucket}-code"))
    print(f"deployed {config.stack_name} to {settings.endpoint('cloudformation')}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start moto, deploy infra/template.yaml, start pump and API")
    sub.add_parser("down", help="stop what `up` started; state is kept for the next `up`")
    sub.add_parser("status", help="what is running")
    sub.add_parser("env", help="shell exports that point boto3 and the AWS CLI at the stack")
    sub.add_parser("demo", help="`up`, then drop the sample photos and print their records")
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
    args = parser.parse_args(argv)

    config = LocalConfig.from_env()
    if args.command == "services":
        _serve(args.host, args.port)
    elif args.command == "deploy":
        _deploy_to_endpoint(config)
    elif args.command in ("up", "demo"):
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        state = stack.up(config)
        print(
            f"local stack up: AWS APIs (moto) {state.moto_url} | API {state.api_url} | "
            f"SageMaker emulator {state.sagemaker_url} | Airflow UI "
            f"{state.airflow_url or 'not started (IMGSIM_LOCAL_AIRFLOW=0)'}"
        )
        if args.command == "demo":
            demo.run(local_settings(config), state.api_url, state.airflow_url)
        print('point boto3 or the AWS CLI at it with: eval "$(python -m pipeline.local env)"')
    elif args.command == "down":
        print("stopped" if stack.down(config) else "nothing was running")
    elif args.command == "status":
        print(json.dumps(stack.status(config), indent=2))
    elif args.command == "env":
        print(_env_lines(config))


if __name__ == "__main__":
    main()
