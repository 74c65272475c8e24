"""The `imgsim` command: its options and sub-commands; each one calls a function of this
package, which does the work."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperGroup

from pipeline.aws_build.api_versions import KEEP
from pipeline.cli import (
    build_commands,
    campaigns,
    evaluation,
    images,
    model_commands,
    pipeline_commands,
    stack_commands,
)
from pipeline.cli.errors import EXIT_CODES, CliError
from pipeline.cli.files import collect_files
from pipeline.cli.output import Output
from pipeline.cli.preflight import preflight as run_preflight
from pipeline.cli.target import Target
from pipeline.embedding.endpoint import DEFAULT_INSTANCE_TYPE as ENDPOINT_INSTANCE_TYPE
from pipeline.embedding.transform_params import DEFAULT_INSTANCE_TYPE
from pipeline.local.config import LocalConfig
from pipeline.monitoring.health import Thresholds
from pipeline.preflight.probes import Plan

EPILOG = "Exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items())


class ReportingGroup(TyperGroup):
    """Turns a CliError from any command into `Error: <message>` on stderr and its exit code."""

    def invoke(self, ctx: typer.Context) -> object:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except CliError as exc:
            Console(stderr=True, soft_wrap=True).print(
                f"Error: {exc}", highlight=False, markup=False
            )
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="imgsim",
    cls=ReportingGroup,
    help="Drive the imgsim pipeline: the local stack, uploads, lookups, campaigns, health.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
campaign_app = typer.Typer(help="Generation campaigns (campaigns/<name>.yaml, run in Airflow).")
app.add_typer(campaign_app, name="campaign")
build_app = typer.Typer(help="Build what a deploy to AWS uploads (docs/deploy.md).")
app.add_typer(build_app, name="build")
versions_app = typer.Typer(help="The API function's published versions on AWS.")
app.add_typer(versions_app, name="api-versions")
model_app = typer.Typer(help="Model artifacts: build one, retire an old one.")
app.add_typer(model_app, name="model")
endpoint_app = typer.Typer(help="The real-time embedding endpoint (IMGSIM_EMBED_ENDPOINT).")
app.add_typer(endpoint_app, name="endpoint")


class Session:
    def __init__(self, target: Target, out: Output) -> None:
        self.target, self.out = target, out


def _session(ctx: typer.Context) -> Session:
    session: Session = ctx.find_object(Session)  # type: ignore[assignment]
    return session


@app.callback()
def main_options(
    ctx: typer.Context,
    api_url: Annotated[
        str | None,
        typer.Option(envvar="IMGSIM_API_URL", help="the API (default: the local stack's)"),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="IMGSIM_API_KEY", help="sent as x-api-key")
    ] = None,
    airflow_url: Annotated[
        str | None,
        typer.Option(envvar="IMGSIM_AIRFLOW_URL", help="Airflow (default: the local stack's)"),
    ] = None,
    airflow_token: Annotated[
        str | None, typer.Option(envvar="IMGSIM_AIRFLOW_TOKEN", help="a JWT for Airflow's API")
    ] = None,
    airflow_username: Annotated[
        str | None,
        typer.Option(envvar="IMGSIM_AIRFLOW_USERNAME", help="log in to Airflow (with password)"),
    ] = None,
    airflow_password: Annotated[
        str | None, typer.Option(envvar="IMGSIM_AIRFLOW_PASSWORD", show_default=False)
    ] = None,
    mwaa_environment: Annotated[
        str | None,
        typer.Option(
            envvar="IMGSIM_MWAA_ENVIRONMENT",
            help="reach Airflow through this MWAA environment (InvokeRestApi, IAM-signed)",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print results as JSON (progress goes to stderr)")
    ] = False,
) -> None:
    target = Target(
        config=LocalConfig.from_env(),
        api_url=api_url,
        api_key=api_key,
        airflow_url=airflow_url,
        airflow_token=airflow_token,
        airflow_username=airflow_username,
        airflow_password=airflow_password,
        mwaa_environment=mwaa_environment,
    )
    ctx.obj = Session(target, Output(as_json=as_json))


@app.command()
def up(ctx: typer.Context) -> None:
    """Start the local stack (state is kept across down/up) and show its services."""
    session = _session(ctx)
    stack_commands.start(session.target.config, session.out)


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop every process the local stack started."""
    session = _session(ctx)
    stack_commands.stop(session.target.config, session.out)


@app.command()
def status(ctx: typer.Context) -> None:
    """Each service of the local stack: its URL and health (exit 3 when not running)."""
    session = _session(ctx)
    stack_commands.show_status(session.target.config, session.out)


@app.command()
def env(ctx: typer.Context) -> None:
    """Shell exports that point boto3, the AWS CLI and imgsim at the local stack:
    eval "$(imgsim env)"."""
    session = _session(ctx)
    stack_commands.show_env(session.target.config, session.out)


@app.command()
def demo(ctx: typer.Context) -> None:
    """`up`, then the sample uploads and photos through the stack, with their records."""
    session = _session(ctx)
    stack_commands.run_demo(session.target.config, session.out)


@build_app.command("lambda")
def build_lambda(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Argument(help="where the zips go")] = Path("build"),
) -> None:
    """The Lambda code package (imgsim.zip) and dependencies layer (imgsim-deps-layer.zip),
    stripped to fit Lambda's 250 MB unzipped (exit 1 when they do not)."""
    build_commands.lambda_zips(out_dir, _session(ctx).out)


@build_app.command("mwaa")
def build_mwaa(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Argument(help="where the bundle goes")] = Path("build/mwaa"),
) -> None:
    """The MWAA bundle (dags/, requirements.txt, startup.sh) from the deployed stack's settings
    in the environment (AWS_REGION, IMGSIM_BUCKET, IMGSIM_EMBED_QUEUE_URL, ...)."""
    build_commands.mwaa_bundle(out_dir, _session(ctx).out)


@versions_app.command("digest")
def api_versions_digest(
    ctx: typer.Context,
    code: Annotated[Path, typer.Argument(help="the code package (build/imgsim.zip)")],
    parameters: Annotated[
        list[str] | None, typer.Argument(help="the deploy's --parameter-overrides Name=Value")
    ] = None,
) -> None:
    """The ApiVersionDigest of a deploy: a new one publishes the API's next version."""
    build_commands.api_version_digest(code, parameters or [], _session(ctx).out)


@versions_app.command("prune")
def api_versions_prune(
    ctx: typer.Context,
    function_name: Annotated[str, typer.Argument(help="the API function (stack output)")],
    keep: Annotated[int, typer.Option(min=1, help="published versions kept")] = KEEP,
) -> None:
    """Delete the API function's published versions but the newest and those an alias names."""
    build_commands.api_version_prune(function_name, keep, _session(ctx).out)


class BuiltFamily(StrEnum):
    """sagemaker_jobs.build_model's families that need no checkpoint (a unit test checks)."""

    efficientnet_lite0 = "efficientnet-lite0"
    color_layout_v1 = "color-layout-v1"


class RandomConfig(StrEnum):
    """sagemaker_jobs.build_model.RANDOM_CONFIGS (a unit test checks)."""

    tiny = "tiny"
    vit_b_32 = "vit-b-32"


class OnnxPrecision(StrEnum):
    fp32 = "fp32"
    int8 = "int8"


@model_app.command("build")
def model_build(
    ctx: typer.Context,
    family: Annotated[
        BuiltFamily | None, typer.Option(help="a family built here, offline (no checkpoint)")
    ] = None,
    checkpoint: Annotated[
        str | None, typer.Option(help="a local directory of a transformers CLIP checkpoint")
    ] = None,
    hf_model_id: Annotated[
        str | None,
        typer.Option(help="a CLIP checkpoint on the Hugging Face hub (needs network)"),
    ] = None,
    random_init: Annotated[
        bool, typer.Option("--random-init", help="a randomly initialised CLIP (--config)")
    ] = False,
    config: Annotated[RandomConfig, typer.Option(help="--random-init's")] = RandomConfig.tiny,
    seed: Annotated[int, typer.Option()] = 0,
    onnx: Annotated[
        OnnxPrecision | None,
        typer.Option(
            help="serve the image tower with ONNX Runtime (efficientnet-lite0 always does)"
        ),
    ] = None,
    random_weights: Annotated[
        bool,
        typer.Option("--random-weights", help="efficientnet-lite0 from a seeded random init"),
    ] = False,
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("build/model.tar.gz"),
    upload_to: Annotated[
        str | None, typer.Option("--upload", help="s3://bucket/key to upload it to")
    ] = None,
) -> None:
    """Build the embedding model.tar.gz (model, imgsim_model.json, code/ and its wheels) from
    one of --family, --checkpoint, --hf-model-id, --random-init."""
    model_commands.build_model(
        output,
        _session(ctx).out,
        family=family.value if family else None,
        checkpoint=checkpoint,
        hf_model_id=hf_model_id,
        random_init=random_init,
        config=config.value,
        seed=seed,
        onnx=onnx.value if onnx else None,
        random_weights=random_weights,
        upload_to=upload_to,
    )


@model_app.command("retire")
def model_retire(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="the old model (no prompt answered by it)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check and list, remove nothing")] = (
        False
    ),
) -> None:
    """Remove an old model's shards, manifests and vectors once every prompt has switched
    (exit 1, nothing removed, while one is still answered by it)."""
    session = _session(ctx)
    model_commands.retire_model(session.target.settings(), model_id, dry_run, session.out)


@endpoint_app.command("deploy")
def endpoint_deploy(
    ctx: typer.Context,
    model_data_url: Annotated[str, typer.Option(help="s3://.../model.tar.gz")],
    role_arn: Annotated[str, typer.Option(help="the SageMaker execution role")],
    instance_type: Annotated[str, typer.Option()] = ENDPOINT_INSTANCE_TYPE,
    instance_count: Annotated[int, typer.Option(min=1)] = 1,
    image_uri: Annotated[
        str, typer.Option(help="default: the SageMaker PyTorch inference image")
    ] = "",
    timeout: Annotated[int, typer.Option(min=1, help="seconds to wait InService")] = 3600,
) -> None:
    """Deploy or update the embedding endpoint on an artifact (unchanged when it already
    serves it)."""
    session = _session(ctx)
    model_commands.deploy_endpoint(
        session.target.settings(),
        session.out,
        model_data_url=model_data_url,
        role_arn=role_arn,
        instance_type=instance_type,
        instance_count=instance_count,
        image_uri=image_uri,
        timeout=timeout,
    )


@app.command()
def upload(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="image files or folders (searched)")],
    prompt: Annotated[str | None, typer.Option("--prompt", "-p")] = None,
    wait: Annotated[bool, typer.Option(help="wait until each image is embedded")] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits")] = 600,
) -> None:
    """Upload images through POST /images; a table of ids and statuses."""
    session = _session(ctx)
    files = collect_files(paths)
    images.upload(session.target.api(), files, prompt, wait, timeout, session.out)


@app.command()
def similar(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="an image id, or a local image file")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="rank this prompt's images")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="how many")] = 10,
) -> None:
    """The images of a prompt most like an image (a local file is embedded on the fly)."""
    session = _session(ctx)
    images.similar(session.target.api(), image, prompt, k, session.out)


@app.command()
def prompts(ctx: typer.Context) -> None:
    """The prompts that have embedded images (GET /prompts)."""
    session = _session(ctx)
    images.prompts(session.target.api(), session.out)


@campaign_app.command("run")
def campaign_run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the campaign: campaigns/<name>.yaml")],
    wait: Annotated[bool, typer.Option(help="follow the run, prompt by prompt")] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits")] = 1800,
) -> None:
    """Trigger the campaign's DAG (generate_<name>) through Airflow's REST API."""
    session = _session(ctx)
    campaigns.run_campaign(session.target.airflow(), name, wait, timeout, session.out)


@app.command()
def health(
    ctx: typer.Context,
    max_pending_minutes: Annotated[float, typer.Option(min=0)] = 60,
    max_dlq_messages: Annotated[int, typer.Option(min=0)] = 0,
    all_images: Annotated[
        bool,
        typer.Option(
            "--all-images",
            help="count every image by status (a Scan of the whole Images table), not only "
            "the pending ones",
        ),
    ] = False,
) -> None:
    """What the pipeline_health DAG checks: pending images, queues, the oldest pending."""
    session = _session(ctx)
    pipeline_commands.health(
        session.target.settings(),
        Thresholds(max_pending_minutes, max_dlq_messages),
        session.out,
        all_images,
    )


class Queue(StrEnum):
    ingest = "ingest"
    embed = "embed"


@app.command()
def redrive(
    ctx: typer.Context,
    queue: Annotated[
        Queue, typer.Option(help="ingest: its DLQ's messages; embed: the images that gave up")
    ] = Queue.ingest,
) -> None:
    """Send failed work back to its queue once the cause is fixed (as the redrive_dlq DAG)."""
    session = _session(ctx)
    pipeline_commands.redrive(session.target.settings(), queue.value, session.out)


@app.command()
def preflight(
    ctx: typer.Context,
    model_id: Annotated[
        str | None, typer.Option(help="the image model (default: IMGSIM_IMAGE_MODEL_ID)")
    ] = None,
    bedrock_region: Annotated[
        str | None,
        typer.Option(help="where Bedrock is called (default: IMGSIM_BEDROCK_REGION)"),
    ] = None,
    transform_instance_type: Annotated[str, typer.Option()] = DEFAULT_INSTANCE_TYPE,
    transform_instance_count: Annotated[int, typer.Option(min=1)] = 1,
    mwaa_environment: Annotated[
        str | None,
        typer.Option(
            envvar="IMGSIM_MWAA_ENVIRONMENT",
            help="an existing MWAA environment whose Airflow version to check",
        ),
    ] = None,
) -> None:
    """Before deploying: the model offered and Active in the Bedrock region, model access
    (Marketplace), the SageMaker transform quota, the MWAA version; each failure with its fix
    (read-only calls; exit 1 when one fails)."""
    session = _session(ctx)
    settings = session.target.settings()
    if bedrock_region:
        settings = replace(settings, bedrock_region=bedrock_region)
    plan = Plan(
        model_id or settings.image_model_id,
        transform_instance_type,
        transform_instance_count,
        mwaa_environment,
    )
    run_preflight(settings, plan, session.out)


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    dataset: Annotated[Path, typer.Argument(help="a folder of label sub-folders, or of IDX files")],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="a model.tar.gz or a named model (repeat)"),
    ] = None,
    stack: Annotated[
        bool, typer.Option("--stack", help="also through the running stack (its API)")
    ] = False,
    limit: Annotated[int | None, typer.Option(min=10, help="a stratified subset")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Retrieval quality (hit@1/5/10, precision@10) with the evaluation harness."""
    session = _session(ctx)
    evaluation.run_eval(session.target, dataset, model or [], stack, limit, seed, session.out)


def main() -> None:
    app()
