"""python -m pipeline.evaluate DATASET [--model NAME_OR_TAR_GZ ...] [--api URL] [--limit N]

DATASET: a folder with one sub-folder per label (e.g. samples/photos), or a folder of IDX files
(e.g. /usr/share/datasets/fashion-mnist). --model: a model.tar.gz or a named model (built once
into build/models/): efficientnet-lite0-imagenet, efficientnet-lite0-imagenet-int8,
efficientnet-lite0-random-init-seed0, color-layout-v1, clip-vit-b-32-random-init-seed0.
--api: a running stack (bucket and endpoints from the environment, e.g.
`eval "$(imgsim env)"`). Prints a Markdown table, then JSON lines.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.evaluate.harness import DEFAULT_MODEL_CACHE, evaluate, table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", action="append", default=[], help="repeat for several")
    parser.add_argument("--api", help="base URL of a running stack's API")
    parser.add_argument("--limit", type=int, help="a stratified subset of this many images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--query-fraction", type=float, default=0.2)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_MODEL_CACHE)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not args.model and not args.api:
        parser.error("name at least one --model, or --api")
    rows = evaluate(
        args.dataset,
        args.model,
        api_url=args.api,
        limit=args.limit,
        seed=args.seed,
        query_fraction=args.query_fraction,
        progress=not args.no_progress,
        cache_dir=args.cache_dir,
    )
    print(table(rows))
    for row in rows:
        print(json.dumps(row.as_dict()))


if __name__ == "__main__":
    main()
