"""`python -m pipeline.upgrade retire MODEL_ID [--dry-run]`: remove a retired model's shards and
vectors (settings from the environment, as every command of the project)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipeline.settings import Settings
from pipeline.upgrade.retire import Retirement, RetireRefused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.upgrade")
    commands = parser.add_subparsers(dest="command", required=True)
    retire = commands.add_parser("retire", help="remove a model no prompt is answered by")
    retire.add_argument("model_id")
    retire.add_argument("--dry-run", action="store_true", help="check and list, remove nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        summary = Retirement(Settings.from_env()).retire(args.model_id, dry_run=args.dry_run)
    except RetireRefused as exc:
        logging.error("refused: %s", exc)
        return 2
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
