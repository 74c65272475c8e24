"""infra/template.yaml: lint-clean, and declaring what DESIGN.md asks of it."""

from cfnlint.api import lint_file

from pipeline.local.cfn_template import TEMPLATE_PATH, load_template

TEMPLATE = load_template()
RESOURCES = TEMPLATE["Resources"]


def test_cfn_lint_passes():
    matches = lint_file(TEMPLATE_PATH)
    assert matches == [], "\n".join(str(m) for m in matches)


def _of_type(kind):
    return {k: v for k, v in RESOURCES.items() if v["Type"] == kind}


def test_ingest_queue_has_a_dlq_after_five_tries():
    redrive = RESOURCES["IngestQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 5
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]}


def test_tables_match_the_data_model():
    tables = {
        v["Properties"]["TableName"]["Ref"]: v["Properties"]
        for v in _of_type("AWS::DynamoDB::Table").values()
    }
    images = tables["ImagesTableName"]
    [gsi] = images["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "Prompt_GSI"
    assert [k["AttributeName"] for k in gsi["KeySchema"]] == ["prompt", "created_at"]
    assert [k["AttributeName"] for k in tables["ShardManifestsTableName"]["KeySchema"]] == [
        "prompt",
        "model_id",
    ]
    assert [k["AttributeName"] for k in tables["EmbeddingsTableName"]["KeySchema"]] == [
        "embedding_id"
    ]


def test_idempotency_table_is_what_powertools_expects_and_only_the_api_writes_it():
    table = RESOURCES["IdempotencyTable"]["Properties"]
    assert table["TableName"] == {"Ref": "IdempotencyTableName"}
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["id"]  # DynamoDBPersistenceLayer
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    env = RESOURCES["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["IMGSIM_IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTableName"}
    target = {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
    for name, role in _of_type("AWS::IAM::Role").items():
        statements = [
            s
            for p in role["Properties"].get("Policies", [])
            for s in p["PolicyDocument"]["Statement"]
        ]
        granted = {a for s in statements if s["Resource"] == target for a in s["Action"]}
        expected = (
            {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
            if name == "ApiFunctionRole"
            else set()
        )
        assert granted == expected, name


def test_bucket_notifies_the_ingest_queue_for_both_prefixes():
    configs = RESOURCES["ImagesBucket"]["Properties"]["NotificationConfiguration"][
        "QueueConfigurations"
    ]
    prefixes = {c["Filter"]["S3Key"]["Rules"][0]["Value"] for c in configs}
    assert prefixes == {"uploads/", "generated/"}
    assert all(c["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]} for c in configs)


def test_function_roles_are_least_privilege():
    for name, role in _of_type("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                actions = actions if isinstance(actions, list) else [actions]
                assert all("*" not in a for a in actions), name
                resources = statement["Resource"]
                resources = resources if isinstance(resources, list) else [resources]
                if actions != ["ecr:GetAuthorizationToken"]:  # has no resource-level scope
                    assert "*" not in resources, name


def test_event_source_mapping_reports_partial_batch_failures():
    mapping = RESOURCES["IngestEventSourceMapping"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_lint_check_can_fail(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        TEMPLATE_PATH.read_text().replace("maxReceiveCount: 5", "maxReceiveCount: five")
    )
    assert lint_file(broken) != []
