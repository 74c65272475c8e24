"""`model build`, `model retire` and `endpoint deploy`: an artifact built from a checkpoint or a
family (sagemaker_jobs.build_model), an old model's vectors removed (pipeline.upgrade.retire),
the real-time endpoint brought to an artifact (pipeline.embedding.endpoint). The work is
theirs; this module maps options to their arguments and their refusals to exit codes."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.cli.errors import FAILED, USAGE, CliError
from pipeline.cli.output import Output
from pipeline.settings import Settings


def build_model(
    output: Path,
    out: Output,
    *,
    family: str | None = None,
    checkpoint: str | None = None,
    hf_model_id: str | None = None,
    random_init: bool = False,
    config: str = "tiny",
    seed: int = 0,
    onnx: str | None = None,
    random_weights: bool = False,
    upload_to: str | None = None,
) -> None:
    """model.tar.gz from exactly one source, uploaded to `upload_to` when given."""
    from sagemaker_jobs.build_model import build, upload

    sources = {
        "--family": family,
        "--checkpoint": checkpoint,
        "--hf-model-id": hf_model_id,
        "--random-init": random_init or None,
    }
    given = [name for name, value in sources.items() if value is not None]
    if len(given) != 1:
        raise CliError(
            f"give exactly one of {', '.join(sources)} (got {', '.join(given) or 'none'})", USAGE
        )
    if upload_to is not None and not upload_to.startswith("s3://"):
        raise CliError(f"--upload takes s3://bucket/key, not {upload_to!r}", USAGE)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with out.busy(f"building {output} ..."):
            model_id = build(
                output,
                family=family or "hf-clip",
                random_config=config if random_init else None,
                seed=seed,
                checkpoint=checkpoint or hf_model_id,
                onnx=onnx,
                pretrained=not random_weights,
            )
    except ValueError as refused:  # e.g. a family that refuses int8
        raise CliError(str(refused), USAGE) from None
    if upload_to:
        with out.busy(f"uploading to {upload_to} ..."):
            upload(output, upload_to)
    out.say(f"model {model_id} in {output}" + (f", uploaded to {upload_to}" if upload_to else ""))
    out.data({"model_id": model_id, "artifact": str(output), "uploaded_to": upload_to})


def retire_model(settings: Settings, model_id: str, dry_run: bool, out: Output) -> None:
    """Remove a model no prompt is answered by; a refusal (it still answers one) is exit 1."""
    from pipeline.upgrade.retire import Retirement, RetireRefused

    try:
        with out.busy(f"retiring {model_id} ..."):
            summary = Retirement(settings).retire(model_id, dry_run=dry_run)
    except RetireRefused as refused:
        raise CliError(f"refused: {refused}", FAILED) from None
    for key, value in summary.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        out.say(f"{key}: {shown}")
    out.data(summary)


def deploy_endpoint(
    settings: Settings,
    out: Output,
    *,
    model_data_url: str,
    role_arn: str,
    instance_type: str,
    instance_count: int,
    image_uri: str,
    timeout: int,
) -> None:
    """`settings.embed_endpoint` InService on the artifact (created, updated or unchanged)."""
    from pipeline.embedding.endpoint import EndpointSpec, deploy

    try:
        spec = EndpointSpec(
            model_data_url=model_data_url,
            role_arn=role_arn,
            instance_type=instance_type,
            instance_count=instance_count,
            image_uri=image_uri,
        )
    except ValueError as bad:
        raise CliError(str(bad), USAGE) from None
    try:
        with out.busy(f"deploying {settings.embed_endpoint} (up to {timeout} s) ..."):
            deployment = deploy(settings, spec, timeout=timeout)
    except RuntimeError as failed:
        raise CliError(str(failed), FAILED) from None
    result: dict[str, Any] = asdict(deployment)
    out.say(f"endpoint {deployment.endpoint_name} {deployment.action}: {deployment.config_name}")
    out.data(result)
