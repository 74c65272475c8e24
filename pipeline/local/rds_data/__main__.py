"""python -m pipeline.local.rds_data --port N --pg-port M --resource-arn ARN --secret-arn ARN:
the RDS Data API emulator in front of a local PostgreSQL, in the foreground."""

from __future__ import annotations

import argparse

from pipeline.local import postgres
from pipeline.local.loopback import run_until_signalled
from pipeline.local.rds_data.server import RdsDataEmulator
from pipeline.local.rds_data.service import Target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.local.rds_data")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, required=True, help="the PostgreSQL it fronts")
    parser.add_argument("--pg-user", default=postgres.SUPERUSER)
    parser.add_argument(
        "--resource-arn", action="append", required=True, help="a cluster ARN it answers for"
    )
    parser.add_argument(
        "--secret-arn", action="append", required=True, help="a secret ARN it accepts"
    )
    parser.add_argument(
        "--default-database", default=postgres.DATABASE, help="for requests naming none"
    )
    args = parser.parse_args(argv)
    target = Target(
        host=args.pg_host,
        port=args.pg_port,
        user=args.pg_user,
        resource_arns=frozenset(args.resource_arn),
        secret_arns=frozenset(args.secret_arn),
        default_database=args.default_database,
    )
    emulator = RdsDataEmulator(target, args.host, args.port).start()
    print(
        f"RDS Data API emulator on {emulator.url} -> PostgreSQL {args.pg_host}:{args.pg_port}",
        flush=True,
    )
    run_until_signalled(emulator.stop)


if __name__ == "__main__":
    main()
