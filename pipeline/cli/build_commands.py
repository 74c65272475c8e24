"""`build lambda`, `build mwaa` and `api-versions`: what a deploy to AWS uploads
(pipeline.aws_build), built and reported from a terminal."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pipeline.cli.errors import FAILED, USAGE, CliError
from pipeline.cli.output import Output


def lambda_zips(out_dir: Path, out: Output) -> None:
    """The code package and the dependencies layer; exit 1 when they do not fit Lambda."""
    from pipeline.aws_build.lambda_package import LAMBDA_UNZIPPED_LIMIT, RUNTIME_PYTHON, build

    with out.busy("building the code package and the dependencies layer ..."):
        built = build(out_dir)
    rows = [
        {"zip": str(path), "unzipped_mb": round(unzipped / 1e6, 1), "zipped_mb": round(z / 1e6, 1)}
        for path, (unzipped, z) in built.sizes.items()
    ]
    out.table("Lambda artifacts", ["zip", "unzipped_mb", "zipped_mb"], rows)
    total, limit = built.unzipped / 1e6, LAMBDA_UNZIPPED_LIMIT / 1e6
    out.say(
        f"layer stripped {built.report.bytes_before / 1e6:.1f} -> "
        f"{built.report.bytes_after / 1e6:.1f} MB; total unzipped {total:.1f} MB of "
        f"Lambda's {limit:.1f} MB"
    )
    if not built.bytecode:
        out.say(f"warning: no python{RUNTIME_PYTHON} here: the zips have no bytecode")
    out.data({"zips": rows, "unzipped_mb": round(total, 1), "limit_mb": round(limit, 1)})
    if not built.fits:
        raise CliError(f"{total:.1f} MB unzipped is over Lambda's {limit:.1f} MB", FAILED)


def mwaa_bundle(out_dir: Path, out: Output, env: Mapping[str, str] = os.environ) -> None:
    """dags/, requirements.txt and startup.sh for MWAA, from the deployed stack's settings in
    the environment (a missing one is a usage error that names it)."""
    from pipeline.aws_build.mwaa_bundle import build

    try:
        built = build(out_dir, env)
    except SystemExit as missing:
        raise CliError(str(missing), USAGE) from None
    out.say(f"MWAA bundle in {built}: dags/, requirements.txt, startup.sh")
    out.data({"bundle": str(built)})


def parameters(pairs: list[str]) -> dict[str, str]:
    """`Name=Value` arguments as a mapping (a pair without `=` or a name is a usage error)."""
    values = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise CliError(f"expected Name=Value, got {pair!r}", USAGE)
        values[name] = value
    return values


def api_version_digest(code: Path, pairs: list[str], out: Output) -> None:
    """The ApiVersionDigest of a deploy: its code package and parameter values."""
    from pipeline.aws_build.api_versions import version_digest

    if not code.is_file():
        raise CliError(f"no code package at {code} (build it with `imgsim build lambda`)", USAGE)
    digest = version_digest(code.read_bytes(), parameters(pairs))
    if out.as_json:
        out.data({"digest": digest})
    else:
        out.console.print(digest, highlight=False)


def api_version_prune(function_name: str, keep: int, out: Output) -> None:
    """Delete the API function's old published versions (AWS credentials from the
    environment, as the AWS CLI takes them)."""
    import boto3

    from pipeline.aws_build.api_versions import prune

    deleted = prune(boto3.client("lambda"), function_name, keep)
    out.say(f"deleted versions: {', '.join(deleted) or 'none'}")
    out.data({"deleted": deleted})
