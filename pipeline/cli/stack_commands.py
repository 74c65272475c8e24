"""`up`, `down`, `status`, `env` and `demo`: `pipeline.local.stack`'s own functions, shown as a
table with each service's health."""

from __future__ import annotations

import shlex
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from pipeline.cli.errors import FAILED, NOT_RUNNING, CliError
from pipeline.cli.output import Output
from pipeline.local import demo, postgres, stack
from pipeline.local.config import LOCAL_CREDENTIALS, LocalConfig, local_settings
from pipeline.local.state_file import StackState

# where each service says it is up; for the emulators any HTTP answer will do
HEALTH_PATHS = {
    "moto": "/moto-api/",
    "api": "/health",
    "sagemaker": "/",
    "bedrock": "/",
    "airflow": "/api/v2/monitor/health",
    "mwaa": "/",
    "rds-data": "/",
}
DESCRIPTIONS = {
    "moto": "S3, SQS, DynamoDB (moto)",
    "api": "REST API + ingest pump",
    "sagemaker": "SageMaker emulator",
    "bedrock": "Bedrock emulator (painter)",
    "airflow": "Airflow 3 standalone",
    "mwaa": "MWAA emulator (InvokeRestApi to Airflow)",
    "postgres": "PostgreSQL + pgvector (vector index)",
    "rds-data": "RDS Data API emulator (to PostgreSQL)",
}


PROBE_SECONDS = 10  # a busy machine's first answer of a just-started Airflow can take seconds
SETTLE_SECONDS = 90  # how long `up` waits for every part to say healthy before reporting


def probe(name: str, url: str) -> str:
    """`healthy`, or why not, from one HTTP request (PostgreSQL: one connection)."""
    if name == "postgres":
        port = urlsplit(url).port
        return "healthy" if port and postgres.accepts_connections(port) else "no answer"
    try:
        response = requests.get(f"{url}{HEALTH_PATHS[name]}", timeout=PROBE_SECONDS)
    except requests.RequestException as exc:
        return f"no answer ({type(exc).__name__})"
    if name == "airflow":
        parts = response.json() if response.ok else {}
        sick = [k for k, v in parts.items() if isinstance(v, dict) and v.get("status") != "healthy"]
        return (
            "healthy"
            if response.ok and not sick
            else f"unhealthy: {', '.join(sick) or response.status_code}"
        )
    if name in ("moto", "api") and not response.ok:
        return f"HTTP {response.status_code}"
    return "healthy"


def rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for name, part in status.items():
        if not isinstance(part, dict):
            continue
        health = probe(name, part["url"]) if part["alive"] else "process gone"
        found.append(
            {
                "service": name,
                "url": part["url"],
                "pid": part["pid"],
                "health": health,
                "what": DESCRIPTIONS.get(name, ""),
            }
        )
    return found


def show_status(config: LocalConfig, out: Output) -> None:
    status = stack.status(config)
    if not status.get("running") and len(status) == 1:
        out.data({"running": False})
        raise CliError("the local stack is not running (start it with `imgsim up`)", NOT_RUNNING)
    services = rows(status)
    out.table("the local stack", ["service", "url", "health", "pid", "what"], services)
    out.data({"running": status["running"], "services": services})
    sick = [s["service"] for s in services if s["health"] != "healthy"]
    if sick:
        raise CliError(f"not healthy: {', '.join(sick)}", FAILED)


def start(config: LocalConfig, out: Output) -> StackState:
    with out.busy("starting the local stack (moto, emulators, API, Airflow) ..."):
        state = stack.up(config)
        settle(config)
    show_status(config, out)
    return state


def settle(config: LocalConfig) -> None:
    """Wait until every running part answers healthy (or SETTLE_SECONDS pass): a part that
    has just started, on a busy machine, is not yet a fault worth reporting."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        services = rows(stack.status(config))
        if all(s["health"] == "healthy" for s in services):
            return
        time.sleep(2)


def stop(config: LocalConfig, out: Output) -> None:
    with out.busy("stopping the local stack ..."):
        stopped = stack.down(config)
    out.say("stopped" if stopped else "nothing was running")
    out.data({"stopped": stopped})


def environment(config: LocalConfig) -> dict[str, str]:
    """What points boto3, the AWS CLI and `imgsim` at the local stack."""
    settings = local_settings(config)
    return {**settings.to_env(), **LOCAL_CREDENTIALS, "IMGSIM_API_URL": config.api_url}


def show_env(config: LocalConfig, out: Output) -> None:
    """`export NAME=value` lines for `eval "$(imgsim env)"` (a JSON object with --json)."""
    env = environment(config)
    if out.as_json:
        out.data(env)
        return
    sys.stdout.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items())))


def run_demo(config: LocalConfig, out: Output) -> None:
    """`up`, then the sample uploads and photos through the stack, their records printed."""
    state = start(config, out)
    demo.run(local_settings(config), state.api_url, state.airflow_url)
    out.say('point boto3 or the AWS CLI at the stack with: eval "$(imgsim env)"')
