"""python -m pipeline.local.bedrock --port N [--throttle-rate F] [--refuse-rate F]: the
Bedrock runtime emulator (a procedural painter, not a model) in the foreground."""

from __future__ import annotations

import argparse

from pipeline.local.bedrock.server import BedrockEmulator, Behaviour
from pipeline.local.loopback import run_until_signalled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.local.bedrock")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--throttle-rate", type=float, default=0.0)
    parser.add_argument("--refuse-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--region", default="us-west-2", help="for requests whose signature names no region"
    )
    args = parser.parse_args(argv)
    emulator = BedrockEmulator(
        Behaviour(args.throttle_rate, args.refuse_rate, args.seed, region=args.region),
        args.host,
        args.port,
    ).start()
    print(
        f"Bedrock runtime emulator (a stand-in: procedural painter) on {emulator.url}", flush=True
    )
    run_until_signalled(emulator.stop)


if __name__ == "__main__":
    main()
