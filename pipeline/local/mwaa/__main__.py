"""python -m pipeline.local.mwaa --port N --environment NAME --airflow-url URL: the MWAA
emulator (InvokeRestApi in front of a local Airflow) in the foreground."""

from __future__ import annotations

import argparse

from pipeline.local.loopback import run_until_signalled
from pipeline.local.mwaa.server import Environment, MwaaEmulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.local.mwaa")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--environment", required=True, help="the environment name it answers")
    parser.add_argument("--airflow-url", required=True, help="the Airflow API server it fronts")
    args = parser.parse_args(argv)
    environment = Environment(args.environment, args.airflow_url)
    emulator = MwaaEmulator(environment, args.host, args.port).start()
    print(f"MWAA emulator ({args.environment} -> {args.airflow_url}) on {emulator.url}", flush=True)
    run_until_signalled(emulator.stop)


if __name__ == "__main__":
    main()
