"""Each identity of the template grants every AWS call its code can make: the calls are read
from the code (tests/iam_calls.py), so a new call without a grant fails here."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from pipeline.aws_build.cfn_template import load_template
from tests.helpers import attached_statements
from tests.iam_calls import REPO_ROOT, UnknownCallSite, aws_calls, iam_action

RESOURCES = load_template()["Resources"]
DAGS = sorted(f"dags.{p.stem}" for p in (REPO_ROOT / "dags").glob("*.py"))

# The code each identity runs: the Lambda handlers, every DAG file (the tasks run as the Airflow
# AWS connection's identity, which carries AirflowTasksPolicy), the SageMaker job's inference code.
CODE_OF = {
    "IngestFunctionRole": ["lambdas.ingest.handler"],
    "ApiFunctionRole": ["lambdas.api.handler"],
    "AirflowTasksPolicy": DAGS,
    "SageMakerExecutionRole": ["sagemaker_jobs.image_embed.code.inference"],
}

# Managed policies of the template that the runbook attaches to an identity beside its own (the
# vector index's Data API grants go to the Airflow role when VectorIndex=aurora; the API role
# attaches them itself, through the policy's Roles).
ATTACHED_BY_THE_RUNBOOK = {"AirflowTasksPolicy": ("VectorIndexPolicy",)}

# What SageMaker itself does with the job's execution role (no code of ours makes these calls):
# the CreateTransformJob execution-role permissions of the SageMaker developer guide, less
# cloudwatch:PutMetricData (it has no resource scope; the job runs without it) and KMS (no key).
PLATFORM_CALLS = {
    "SageMakerExecutionRole": (
        "s3:GetObject",  # the model artifact and the inputs
        "s3:PutObject",  # the outputs
        "s3:ListBucket",  # an S3Prefix input
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:DescribeLogStreams",
        "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    ),
}


def _granted_actions(identity: str) -> set[str]:
    """Every action an Allow statement of the identity grants, on any resource, with every
    optional part of the stack on (a call the code makes only then is granted only then)."""
    actions: set[str] = set()
    names = (identity, *ATTACHED_BY_THE_RUNBOOK.get(identity, ()))
    for statement in (s for name in names for s in attached_statements(RESOURCES, name)):
        if statement.get("Effect") == "Allow":
            action = statement["Action"]
            actions |= {action} if isinstance(action, str) else set(action)
    return actions


def _missing(identity: str, modules: list[str], root: Path = REPO_ROOT) -> dict[str, list[str]]:
    granted = _granted_actions(identity)
    missing: dict[str, list[str]] = defaultdict(list)
    for call in aws_calls(modules, root):
        if call.action not in granted:
            missing[call.action].append(call.where)
    for action in PLATFORM_CALLS.get(identity, ()):
        if action not in granted:
            missing[action].append("the SageMaker platform")
    return dict(missing)


@pytest.mark.parametrize("identity", sorted(CODE_OF))
def test_the_template_grants_every_aws_call_of_the_identity_s_code(identity: str) -> None:
    missing = _missing(identity, CODE_OF[identity])
    assert missing == {}, f"{identity} lacks (action: call sites): {missing}"


def test_the_scan_finds_the_calls_behind_each_flow() -> None:
    """The scan sees through the adapters, the properties and the libraries: the exact copy's
    vector of the switched model (BatchGetItem, EmbeddingStore.get_for_model) in the ingest,
    powertools' idempotency records and the endpoint in the API, the provider's transform and
    PassRole in the DAG tasks, and no more than the ingest reaches (it deletes no object)."""
    ingest = {c.action for c in aws_calls(CODE_OF["IngestFunctionRole"])}
    assert "dynamodb:BatchGetItem" in ingest
    assert {"s3:DeleteObject", "dynamodb:Scan", "bedrock:InvokeModel"}.isdisjoint(ingest)
    api = aws_calls(CODE_OF["ApiFunctionRole"])
    assert "pipeline.api.idempotency -> aws_lambda_powertools.utilities.idempotency" in {
        c.where for c in api if c.action == "dynamodb:DeleteItem"
    }
    assert {"sagemaker:InvokeEndpoint", "bedrock:InvokeModel", "dynamodb:Scan"} <= {
        c.action for c in api
    }
    airflow = {c.action for c in aws_calls(CODE_OF["AirflowTasksPolicy"])}
    assert {"iam:PassRole", "sagemaker:CreateTransformJob", "s3:ListBucket"} <= airflow
    # the vector index's SQL: DataApi._call picks the operation by name (getattr)
    data_api = {"rds-data:ExecuteStatement", "rds-data:BatchExecuteStatement"}
    assert data_api | {"secretsmanager:GetSecretValue"} <= airflow & {c.action for c in api}
    assert data_api.isdisjoint(ingest)
    assert {c.action for c in aws_calls(CODE_OF["SageMakerExecutionRole"])} == {"s3:GetObject"}


def test_operation_names_become_iam_actions() -> None:
    assert iam_action("sagemaker-runtime", "InvokeEndpoint") == "sagemaker:InvokeEndpoint"
    assert iam_action("bedrock-runtime", "InvokeModel") == "bedrock:InvokeModel"
    assert iam_action("s3", "HeadObject") == "s3:GetObject"
    assert iam_action("s3", "ListObjectsV2") == "s3:ListBucket"
    assert iam_action("sqs", "DeleteMessageBatch") == "sqs:DeleteMessage"


def _package(root: Path, source: str) -> None:
    (root / "pipeline").mkdir()
    (root / "pipeline" / "__init__.py").write_text("")
    (root / "pipeline" / "entry.py").write_text(source)


def test_a_new_call_without_a_grant_fails(tmp_path: Path) -> None:
    _package(
        tmp_path,
        "import boto3\n\n\n"
        "def handle(bucket: str) -> None:\n"
        "    s3 = boto3.client('s3')\n"
        "    s3.delete_object(Bucket=bucket, Key='uploads/x')\n",
    )
    missing = _missing("IngestFunctionRole", ["pipeline.entry"], tmp_path)
    assert missing == {"s3:DeleteObject": ["pipeline.entry:6"]}


@pytest.mark.parametrize(
    "source",
    [
        # a receiver the scan cannot place: a client handed in under an unknown name
        "def handle(queue) -> None:\n    queue.send_message(QueueUrl='q', MessageBody='m')\n",
        # a library that calls AWS and is not in the written list
        "from sagemaker_core.resources import Endpoint\n",
    ],
)
def test_an_unknown_call_site_fails_the_scan(tmp_path: Path, source: str) -> None:
    _package(tmp_path, source)
    with pytest.raises(UnknownCallSite):
        aws_calls(["pipeline.entry"], tmp_path)


def test_an_operation_picked_by_name_is_each_name_its_callers_pass(tmp_path: Path) -> None:
    _package(
        tmp_path,
        "from pipeline import aws\n\n\n"
        "class Index(aws.Adapter):\n"
        "    service = 'rds-data'\n\n"
        "    def run(self) -> None:\n"
        "        self._call('execute_statement', sql='s')\n"
        "        self._call(operation='batch_execute_statement', sql='s')\n"
        "        getattr(self.client, 'begin_transaction')()\n\n"
        "    def _call(self, operation: str, **kwargs) -> None:\n"
        "        getattr(self.client, operation)(**kwargs)\n",
    )
    calls = {(c.where, c.action) for c in aws_calls(["pipeline.entry"], tmp_path)}
    assert {
        ("pipeline.entry:8 (through pipeline.entry:13)", "rds-data:ExecuteStatement"),
        ("pipeline.entry:9 (through pipeline.entry:13)", "rds-data:BatchExecuteStatement"),
        ("pipeline.entry:10", "rds-data:BeginTransaction"),
    } <= calls
    source = (tmp_path / "pipeline" / "entry.py").read_text()
    (tmp_path / "pipeline" / "entry.py").write_text(
        source.replace("'batch_execute_statement'", "'batch_' + 'execute_statement'")
    )
    with pytest.raises(UnknownCallSite, match="entry:9: _call"):
        aws_calls(["pipeline.entry"], tmp_path)


RDS_DATA_ACTIONS = {
    "rds-data:ExecuteStatement",
    "rds-data:BatchExecuteStatement",
    "rds-data:BeginTransaction",
    "rds-data:CommitTransaction",
    "rds-data:RollbackTransaction",
}


def test_a_data_api_call_needs_its_action_and_the_secret_and_only_the_index_s_identities_have_them(
    tmp_path: Path,
) -> None:
    """The Data API reads the cluster's secret as the caller: each rds-data call implies
    secretsmanager:GetSecretValue. The API role and the Airflow role (with the policy the
    runbook attaches) are granted both; the ingest role, which never ranks, is not."""
    _package(
        tmp_path,
        "from pipeline import aws\n\n\n"
        "def rank(settings, rds_data) -> None:\n"
        "    aws.client(settings, 'rds-data').execute_statement(resourceArn='c', sql='s')\n"
        "    tx = rds_data.begin_transaction(resourceArn='c', secretArn='s')\n"
        "    rds_data.commit_transaction(resourceArn='c', secretArn='s', transactionId=tx)\n",
    )
    calls = {(c.where, c.action) for c in aws_calls(["pipeline.entry"], tmp_path)}
    assert ("pipeline.entry:5", "rds-data:ExecuteStatement") in calls
    assert (
        "pipeline.entry:5 (implied by rds-data:ExecuteStatement)",
        "secretsmanager:GetSecretValue",
    ) in calls
    assert set(_missing("IngestFunctionRole", ["pipeline.entry"], tmp_path)) == {
        "rds-data:ExecuteStatement",
        "rds-data:BeginTransaction",
        "rds-data:CommitTransaction",
        "secretsmanager:GetSecretValue",
    }
    for identity in ("ApiFunctionRole", "AirflowTasksPolicy"):
        assert _missing(identity, ["pipeline.entry"], tmp_path) == {}, identity
        assert RDS_DATA_ACTIONS | {"secretsmanager:GetSecretValue"} <= _granted_actions(identity)
