"""The imgsim CLI without a stack: which files an upload sends, the exit codes scripts rely on
when nothing runs or the arguments are wrong, and the per-prompt rows of `campaign run`."""

from __future__ import annotations

import inspect
import json
import shlex
import tarfile

import pytest
import typer
from typer.testing import CliRunner

from pipeline.cli import model_commands
from pipeline.cli.app import BuiltFamily, RandomConfig, app
from pipeline.cli.campaigns import prompt_rows
from pipeline.cli.errors import NOT_RUNNING, USAGE, CliError
from pipeline.cli.files import collect_files
from pipeline.embedding.endpoint import EndpointSpec
from pipeline.local.processes import free_port
from sagemaker_jobs.build_model import FAMILIES, MODEL_CARD, RANDOM_CONFIGS
from tests.helpers import MWAA_BUNDLE_ENV, image_bytes


@pytest.fixture
def run(tmp_path, monkeypatch):
    """`imgsim ...` with an empty local-stack directory (no stack) and no URLs set."""
    monkeypatch.setenv("IMGSIM_LOCAL_DIR", str(tmp_path / "local"))
    for name in ("IMGSIM_API_URL", "IMGSIM_AIRFLOW_URL", "IMGSIM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return lambda *args: CliRunner().invoke(app, list(args))


def test_folders_give_their_images_and_named_files_are_sent_as_given(tmp_path):
    (tmp_path / "a" / "deeper").mkdir(parents=True)
    (tmp_path / "a" / "one.JPG").write_bytes(image_bytes())
    (tmp_path / "a" / "deeper" / "two.png").write_bytes(image_bytes("PNG"))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    named = tmp_path / "named.txt"
    named.write_text("sent anyway: the API says why it is refused")

    files = collect_files([tmp_path / "a", named, tmp_path / "a" / "one.JPG"])

    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "a/deeper/two.png",
        "a/one.JPG",
        "named.txt",
    ]


def test_no_image_among_the_paths_is_a_usage_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CliError) as missing:
        collect_files([tmp_path / "nope.jpg"])
    assert missing.value.exit_code == USAGE and "no such file" in str(missing.value)
    with pytest.raises(CliError) as empty:
        collect_files([tmp_path])
    assert empty.value.exit_code == USAGE


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["similar", "some-id", "--prompt", "a cat"],
        ["prompts"],
        ["campaign", "run", "demo"],
        ["--json", "status"],
    ],
)
def test_without_a_stack_commands_exit_3_with_the_reason(run, args):
    result = run(*args)
    assert result.exit_code == NOT_RUNNING, result.output
    assert "imgsim up" in result.output


def test_upload_checks_its_paths_before_the_stack(run, tmp_path):
    result = run("upload", str(tmp_path / "missing.jpg"))
    assert result.exit_code == USAGE
    assert "no such file or folder" in result.output


def test_usage_errors_exit_2(run):
    assert run("similar", "some-id").exit_code == USAGE  # --prompt is required
    assert run("similar", "x", "--prompt", "p", "-k", "0").exit_code == USAGE
    assert run("no-such-command").exit_code == USAGE


def test_an_api_that_does_not_answer_exits_3(run):
    url = f"http://127.0.0.1:{free_port()}"
    result = run("--api-url", url, "similar", "some-id", "--prompt", "a cat")
    assert result.exit_code == NOT_RUNNING
    assert f"cannot reach the API at {url}" in result.output


def test_down_without_a_stack_says_so(run):
    result = run("--json", "down")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"stopped": False}


def test_env_exports_what_points_boto3_and_imgsim_at_the_stack(run):
    result = run("env")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("export ") for line in lines)
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in lines)
    assert exported["IMGSIM_API_URL"].startswith("http://127.0.0.1:")
    assert exported["AWS_ENDPOINT_URL_S3"].startswith("http://127.0.0.1:")
    assert json.loads(run("--json", "env").stdout) == exported


def test_build_mwaa_names_the_settings_it_lacks_and_writes_the_bundle(run, tmp_path, monkeypatch):
    for name in MWAA_BUNDLE_ENV:
        monkeypatch.delenv(name, raising=False)
    missing = run("build", "mwaa", str(tmp_path / "mwaa"))
    assert missing.exit_code == USAGE and "IMGSIM_BUCKET" in missing.stderr
    for name, value in MWAA_BUNDLE_ENV.items():
        monkeypatch.setenv(name, value)
    built = run("--json", "build", "mwaa", str(tmp_path / "mwaa"))
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout) == {"bundle": str(tmp_path / "mwaa")}
    assert (tmp_path / "mwaa" / "startup.sh").is_file()
    assert (tmp_path / "mwaa" / "dags" / "pipeline" / "settings.py").is_file()


def test_every_command_a_person_types_is_one_of_imgsims(run):
    text = "".join(run(*group, "--help").output for group in ([], ["build"], ["model"]))
    text += run("endpoint", "--help").output
    for command in ("up", "down", "status", "env", "demo", "eval", "build", "lambda", "mwaa"):
        assert f" {command} " in text, command
    for command in ("model", "retire", "endpoint", "deploy"):
        assert f" {command} " in text, command


def test_help_lists_the_exit_codes(run):
    result = run("--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # rich wraps the epilog to the terminal's width
    assert "Exit codes: 0 success" in text and "3 the stack is not running" in text


def test_campaign_rows_follow_the_mapped_tasks_in_plan_order():
    rows = prompt_rows(
        ["a fox", "a moth", "a cat"],
        {0: "success", 1: "running"},
        {
            0: {
                "outcomes": [
                    {"status": "generated"},
                    {"status": "generated"},
                    {"status": "refused"},
                ]
            }
        },
    )
    assert rows == [
        {
            "prompt": "a fox",
            "state": "success",
            "generated": 2,
            "existing": 0,
            "refused": 1,
            "failed": 0,
        },
        {
            "prompt": "a moth",
            "state": "running",
            "generated": None,
            "existing": None,
            "refused": None,
            "failed": None,
        },
        {
            "prompt": "a cat",
            "state": "waiting",
            "generated": None,
            "existing": None,
            "refused": None,
            "failed": None,
        },
    ]


def test_eval_wants_a_model_or_the_stack_and_a_labelled_folder(run, tmp_path):
    assert run("eval", "samples/photos").exit_code == USAGE
    (tmp_path / "flat.jpg").write_bytes(image_bytes())
    result = run("eval", str(tmp_path), "--model", "color-layout-v1")
    assert result.exit_code == USAGE
    assert "one sub-folder per label" in result.output


def test_model_build_writes_the_artifact_of_the_family_asked_for(run, tmp_path):
    output = tmp_path / "deeper" / "color.tar.gz"
    built = run("--json", "model", "build", "--family", "color-layout-v1", "-o", str(output))
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout) == {
        "model_id": "color-layout-v1",
        "artifact": str(output),
        "uploaded_to": None,
    }
    with tarfile.open(output) as archive:
        card = json.load(archive.extractfile(MODEL_CARD))  # type: ignore[arg-type]
    assert card["model_id"] == "color-layout-v1" and card["family"] == "color-layout"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "got none"),
        (["--family", "color-layout-v1", "--random-init"], "got --family, --random-init"),
        (["--family", "color-layout-v1", "--upload", "http://x/m.tar.gz"], "s3://bucket/key"),
        (["--family", "no-such-family"], "no-such-family"),
    ],
)
def test_model_build_wants_one_source_and_an_s3_upload(run, tmp_path, args, says):
    result = run("model", "build", *args, "-o", str(tmp_path / "m.tar.gz"))
    assert result.exit_code == USAGE and says in result.output, result.output
    assert not (tmp_path / "m.tar.gz").exists()


def test_the_model_and_endpoint_options_are_those_of_the_functions_they_call():
    """Each choice offered is one the builder knows, and each option reaches its argument."""
    assert {f.value for f in BuiltFamily} == set(FAMILIES) - {"hf-clip"}
    assert {c.value for c in RandomConfig} == set(RANDOM_CONFIGS)
    group = typer.main.get_group(app)
    options = {
        path: {p.name for p in group.commands[path[0]].commands[path[1]].params}  # type: ignore[attr-defined]
        for path in (("model", "build"), ("model", "retire"), ("endpoint", "deploy"))
    }
    assert options[("model", "retire")] == {"model_id", "dry_run"}
    called = {
        ("model", "build"): model_commands.build_model,
        ("endpoint", "deploy"): model_commands.deploy_endpoint,
    }
    for path, function in called.items():
        assert options[path] <= set(inspect.signature(function).parameters), path
    assert (
        set(inspect.signature(EndpointSpec).parameters) - {"environment"}
        <= options[("endpoint", "deploy")]
    )


def test_endpoint_deploy_refuses_what_sagemaker_would_before_calling_it(run):
    result = run(
        "endpoint", "deploy", "--model-data-url", "s3://b/m.tar.gz", "--role-arn", "deployer"
    )
    assert result.exit_code == USAGE and "ARN of the SageMaker execution role" in result.output
    local = run("endpoint", "deploy", "--model-data-url", "/tmp/m.tar.gz", "--role-arn", "arn:x")
    assert local.exit_code == USAGE and "s3:// URI" in local.output
    assert run("endpoint", "deploy", "--role-arn", "arn:x").exit_code == USAGE
