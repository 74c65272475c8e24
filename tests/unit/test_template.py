"""infra/template.yaml: lint-clean, and declaring what docs/deploy.md says of it."""

import json
from fnmatch import fnmatchcase

from cfnlint.api import lint_file

from pipeline.aws_build.cfn_template import TEMPLATE_PATH, load_template, resolve
from tests.helpers import policy_statements

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


def test_the_embed_queue_has_no_dead_letter_queue_its_messages_are_deleted_on_reception():
    """The watcher's trigger deletes what it receives: no receive count reaches a DLQ, so none
    is deployed (an embedding's attempts are counted on its image record)."""
    assert "RedrivePolicy" not in RESOURCES["EmbedQueue"]["Properties"]
    dead_letter_queues = [k for k, v in _of_type("AWS::SQS::Queue").items() if "DeadLetter" in k]
    assert dead_letter_queues == ["IngestDeadLetterQueue"]


def test_tables_match_the_data_model():
    tables = {
        v["Properties"]["TableName"]["Ref"]: v["Properties"]
        for v in _of_type("AWS::DynamoDB::Table").values()
    }
    images = tables["ImagesTableName"]
    indexes = {g["IndexName"]: g for g in images["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"Prompt_GSI", "Sha256_GSI", "Pending_GSI"}
    keys = {name: [k["AttributeName"] for k in g["KeySchema"]] for name, g in indexes.items()}
    assert keys == {
        "Prompt_GSI": ["prompt", "created_at"],
        "Sha256_GSI": ["sha256", "created_at"],
        "Pending_GSI": ["pending_shard", "created_at"],
    }
    # the health probe counts pending images by source from the index alone
    assert indexes["Pending_GSI"]["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["source"],
    }
    defined = {d["AttributeName"]: d["AttributeType"] for d in images["AttributeDefinitions"]}
    assert defined["pending_shard"] == "S"
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
    events = {(c["Event"], c["Filter"]["S3Key"]["Rules"][0]["Value"]) for c in configs}
    kinds = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
    assert events == {(e, p) for e in kinds for p in prefixes}
    assert all(c["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]} for c in configs)


# Actions with no resource-level scope (the service authorization reference lists no resource
# type for them): only `*` names them.
UNSCOPED_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "aws-marketplace:Subscribe",
    "aws-marketplace:Unsubscribe",
    "aws-marketplace:ViewSubscriptions",
}


def test_function_roles_are_least_privilege():
    identities = {**_of_type("AWS::IAM::Role"), **_of_type("AWS::IAM::ManagedPolicy")}
    for name in identities:
        for statement in _statements(name):
            actions = statement["Action"]
            actions = actions if isinstance(actions, list) else [actions]
            assert all("*" not in a for a in actions), name
            resources = statement["Resource"]
            resources = resources if isinstance(resources, list) else [resources]
            if not set(actions) <= UNSCOPED_ACTIONS:
                assert "*" not in resources, name


def _arns_granted(identity, action):
    """The resources (resolved with made-up names) on which `identity` may call `action`;
    resources that name something else than the stack's tables and bucket are left out."""
    refs = {"AWS::Partition": "aws", "AWS::Region": "r", "AWS::AccountId": "1", "BucketName": "b"}
    attributes = {
        f"{t}.Arn": f"arn:aws:dynamodb:r:1:table/{t}" for t in _of_type("AWS::DynamoDB::Table")
    }
    arns = []
    for statement in _statements(identity):
        actions = statement["Action"] if isinstance(statement["Action"], list) else []
        if statement["Effect"] != "Allow" or action not in [statement["Action"], *actions]:
            continue
        resources = statement["Resource"]
        for resource in resources if isinstance(resources, list) else [resources]:
            try:
                arns.append(resolve(resource, refs, attributes))
            except KeyError:
                continue
    return arns


def test_the_pending_index_s_readers_may_query_it():
    """The DAG tasks (the embed run's safety net, pipeline_health) Query Pending_GSI and read
    the pending records whole with BatchGetItem; the count of every image Scans the table."""
    table = "arn:aws:dynamodb:r:1:table/ImagesTable"
    needs = {
        "dynamodb:Query": f"{table}/index/Pending_GSI",
        "dynamodb:BatchGetItem": table,
        "dynamodb:Scan": table,
    }
    for action, arn in needs.items():
        granted = _arns_granted("AirflowTasksPolicy", action)
        assert any(fnmatchcase(arn, pattern) for pattern in granted), (action, granted)


def test_bedrock_is_called_and_granted_in_its_own_region_with_marketplace_subscription():
    """The default model is served in us-west-2 only: the API function is told the Bedrock
    region, and both callers' Bedrock grants name it (not the stack's region); both may
    subscribe the account to a third-party model on its first call."""
    assert TEMPLATE["Parameters"]["BedrockRegion"]["Default"] == "us-west-2"
    environment = RESOURCES["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert environment["IMGSIM_BEDROCK_REGION"] == {"Ref": "BedrockRegion"}
    marketplace = {
        "aws-marketplace:Subscribe",
        "aws-marketplace:Unsubscribe",
        "aws-marketplace:ViewSubscriptions",
    }
    for caller in ("ApiFunctionRole", "AirflowTasksPolicy"):
        statements = [
            {**s, "Action": s["Action"] if isinstance(s["Action"], list) else [s["Action"]]}
            for s in _statements(caller)
        ]
        bedrock = [s for s in statements if "bedrock:InvokeModel" in s["Action"]]
        assert len(bedrock) == 1, caller
        arn = bedrock[0]["Resource"]["Fn::Sub"]
        assert ":bedrock:${BedrockRegion}::foundation-model/" in arn, caller
        assert "bedrock:GetFoundationModel" in bedrock[0]["Action"]
        granted = {a for s in statements for a in s["Action"] if a.startswith("aws-marketplace:")}
        assert granted == marketplace, caller


def test_event_source_mapping_reports_partial_batch_failures():
    mapping = RESOURCES["IngestEventSourceMapping"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_lint_check_can_fail(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        TEMPLATE_PATH.read_text().replace("maxReceiveCount: 5", "maxReceiveCount: five")
    )
    assert lint_file(broken) != []


def _statements(logical_id):
    return policy_statements(RESOURCES, logical_id)


def _granted(logical_id, resource):
    return {
        action
        for s in _statements(logical_id)
        if resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }


def test_queues_are_reached_by_name_and_missing_keys_are_404():
    """The code resolves queue URLs by name (sqs:GetQueueUrl is its own permission), and S3
    answers 404 for a missing key only to callers that may list the bucket."""
    embed_queue = {"Fn::GetAtt": ["EmbedQueue", "Arn"]}
    bucket = {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}"}
    for identity in ("IngestFunctionRole", "ApiFunctionRole", "AirflowTasksPolicy"):
        assert {"sqs:GetQueueUrl", "sqs:SendMessage"} <= _granted(identity, embed_queue)
        assert "s3:ListBucket" in _granted(identity, bucket), identity


def test_the_airflow_tasks_may_pass_the_job_its_role_and_delete_merged_shards():
    [passing] = [s for s in _statements("AirflowTasksPolicy") if s["Action"] == "iam:PassRole"]
    assert passing["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    shards = {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}/embeddings/*"}
    assert "s3:DeleteObject" in _granted("AirflowTasksPolicy", shards)
    outputs = TEMPLATE["Outputs"]
    assert outputs["AirflowTasksPolicyArn"]["Value"] == {"Ref": "AirflowTasksPolicy"}


def test_api_keys_are_required_by_default_but_not_for_the_open_pages():
    assert TEMPLATE["Parameters"]["ApiKeyRequired"]["Default"] == "true"
    methods = _of_type("AWS::ApiGateway::Method")
    assert methods["ProxyMethod"]["Properties"]["ApiKeyRequired"] == {
        "Fn::If": ["WithApiKey", True, False]
    }
    open_paths = {
        RESOURCES[m["Properties"]["ResourceId"]["Ref"]]["Properties"]["PathPart"]
        if "Ref" in m["Properties"]["ResourceId"]
        else "/"
        for m in methods.values()
        if m["Properties"]["ApiKeyRequired"] is False
    }
    assert open_paths == {"/", "health", "docs", "openapi.json"}
    deployment = RESOURCES["ApiDeployment"]["DependsOn"]
    assert set(deployment) == set(methods)


def test_the_stage_is_throttled():
    [setting] = RESOURCES["ApiStage"]["Properties"]["MethodSettings"]
    assert (setting["ResourcePath"], setting["HttpMethod"]) == ("/*", "*")
    assert setting["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRate"}
    assert setting["ThrottlingBurstLimit"] == {"Ref": "ApiThrottleBurst"}


def test_every_function_logs_to_a_group_with_retention():
    for name, function in _of_type("AWS::Lambda::Function").items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert RESOURCES[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert name.replace("Function", "") in group


def test_data_outlives_the_stack():
    for name in ("ImagesBucket", "ImagesTable", "EmbeddingsTable", "ShardManifestsTable"):
        assert RESOURCES[name]["DeletionPolicy"] == "Retain", name
        assert RESOURCES[name]["UpdateReplacePolicy"] == "Retain", name


def test_the_bucket_refuses_plain_http_and_expires_only_run_files():
    [statement] = RESOURCES["ImagesBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Deny", "s3:*")
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    rules = RESOURCES["ImagesBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if "ExpirationInDays" in r]
    assert [r["Prefix"] for r in expiring] == ["embed-runs/"]


def test_the_embedding_endpoint_is_optional_and_serves_the_batch_job_s_image():
    from pipeline.embedding.transform_config import serving_image_uri

    for name in ("EmbedModel", "EmbedEndpointConfig", "EmbedSageMakerEndpoint"):
        assert RESOURCES[name]["Condition"] == "WithEmbedEndpoint"
    assert TEMPLATE["Parameters"]["EmbedEndpoint"]["Default"] == "none"
    endpoint = RESOURCES["EmbedSageMakerEndpoint"]["Properties"]
    assert endpoint["EndpointName"] == {"Ref": "EmbedEndpointName"}
    env = RESOURCES["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["IMGSIM_EMBED_ENDPOINT"] == {"Ref": "EmbedEndpointName"}
    [rule] = TEMPLATE["Rules"].values()
    assert rule["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "EmbedModelDataUrl"}, ""]}]
    }
    default_image = RESOURCES["EmbedModel"]["Properties"]["PrimaryContainer"]["Image"]["Fn::If"][1]
    resolved = resolve(
        default_image, {"AWS::Region": "eu-west-1", "AWS::URLSuffix": "amazonaws.com"}, {}
    )
    assert resolved == serving_image_uri("eu-west-1", "ml.m5.large")


def test_intrinsics_resolve_like_cloudformation():
    refs = {"BucketName": "b", "AWS::Partition": "aws"}
    attributes = {"ImagesTable.Arn": "arn:aws:dynamodb:r:1:table/T"}
    node = {
        "Resource": [
            {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}/*"},
            {"Fn::Sub": "${ImagesTable.Arn}/index/X"},
            {"Fn::GetAtt": ["ImagesTable", "Arn"]},
            {"Fn::Sub": ["${Name}-dlq", {"Name": {"Ref": "BucketName"}}]},
            {"Fn::Sub": "${!Literal}-${BucketName}"},
        ],
        "Keep": "as is ${!Literal}",
    }
    assert resolve(node, refs, attributes) == {
        "Resource": [
            "arn:aws:s3:::b/*",
            "arn:aws:dynamodb:r:1:table/T/index/X",
            "arn:aws:dynamodb:r:1:table/T",
            "b-dlq",
            "${Literal}-b",
        ],
        "Keep": "as is ${!Literal}",
    }


def _runbook() -> str:
    return (TEMPLATE_PATH.parents[1] / "docs" / "deploy.md").read_text()


def test_the_runbook_names_the_template_s_parameters_and_outputs():
    """Every `--parameter-overrides Name=value` and `OutputKey=='Name'` of the runbook
    (docs/deploy.md) exists in the template (the AWS commands themselves need an account)."""
    import re

    runbook = _runbook().replace("\\\n", " ")
    for name, value in re.findall(r'^(\w+)="([^"]*)"$', runbook, re.MULTILINE):
        runbook = runbook.replace(f"${name} ", f"{value} ")  # PARAMS="..." then $PARAMS
    overrides = [
        name
        for line in runbook.splitlines()
        if "--parameter-overrides" in line
        for name in re.findall(r"\s([A-Za-z]+)=", line.split("--parameter-overrides", 1)[1])
    ]
    assert {"BucketName", "CodeBucket", "EmbedEndpoint", "EmbedModelDataUrl"} <= set(overrides)
    assert set(overrides) <= set(TEMPLATE["Parameters"])
    outputs = re.findall(r"OutputKey=='(\w+)'", runbook)
    assert outputs and set(outputs) <= set(TEMPLATE["Outputs"])


def test_the_airflow_tasks_may_batch_write_vectors_and_redrive_the_ingest_dead_letter_queue():
    """reembed's commit writes vectors 25 to a BatchWriteItem; redrive_dlq starts an SQS move
    task on the ingest DLQ (which acts with the caller's receive, delete and send), or moves
    the messages itself, and reopens given-up images (the Images table's writes)."""
    embeddings = {"Fn::GetAtt": ["EmbeddingsTable", "Arn"]}
    assert "dynamodb:BatchWriteItem" in _granted("AirflowTasksPolicy", embeddings)
    dlq = {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]}
    assert {
        "sqs:GetQueueUrl",
        "sqs:GetQueueAttributes",
        "sqs:StartMessageMoveTask",
        "sqs:ListMessageMoveTasks",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
    } <= _granted("AirflowTasksPolicy", dlq)
    target = {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    assert {"sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:SendMessage"} <= _granted(
        "AirflowTasksPolicy", target
    )
    # an operator's command, not a DAG task: retire's deletes are not the Airflow role's
    manifests = {"Fn::GetAtt": ["ShardManifestsTable", "Arn"]}
    assert "dynamodb:DeleteItem" not in _granted("AirflowTasksPolicy", manifests)


def test_api_gateway_invokes_an_alias_on_a_published_snapstart_version_each_code_key_renews():
    function = RESOURCES["ApiFunction"]["Properties"]
    assert function["SnapStart"] == {"ApplyOn": {"Ref": "ApiSnapStart"}}
    assert function["Code"]["S3Key"] == {"Ref": "CodeKey"}  # a new key: new code
    assert TEMPLATE["Parameters"]["ApiSnapStart"]["Default"] == "PublishedVersions"
    version = RESOURCES["ApiFunctionVersion"]
    assert version["Properties"]["FunctionName"] == {"Ref": "ApiFunction"}
    assert "${CodeKey}" in version["Properties"]["Description"]["Fn::Sub"]  # and a new version
    assert version["UpdateReplacePolicy"] == "Retain"  # the one the alias left, for a rollback
    alias = RESOURCES["ApiFunctionAlias"]["Properties"]
    assert alias["FunctionVersion"] == {"Fn::GetAtt": ["ApiFunctionVersion", "Version"]}
    # the alias's ARN never changes: the stage's deployment keeps invoking the current version
    uris = [
        method["Properties"]["Integration"]["Uri"]["Fn::Sub"]
        for method in _of_type("AWS::ApiGateway::Method").values()
        if "Integration" in method["Properties"]
    ]
    assert len(uris) == 5 and all("functions/${ApiFunctionAlias}/invocations" in u for u in uris)
    permission = RESOURCES["ApiInvokePermission"]["Properties"]
    assert permission["FunctionName"] == {"Ref": "ApiFunctionAlias"}


def test_the_local_stack_s_copy_names_the_function_where_moto_cannot_reference_a_version():
    from pipeline.aws_build.cfn_template import without_lambda_versions

    local = without_lambda_versions(TEMPLATE)
    assert not {"ApiFunctionVersion", "ApiFunctionAlias"} & set(local["Resources"])
    permission = local["Resources"]["ApiInvokePermission"]["Properties"]
    assert permission["FunctionName"] == {"Fn::GetAtt": ["ApiFunction", "Arn"]}
    assert "${ApiFunctionAlias}" not in json.dumps(local)
    assert "functions/${ApiFunction.Arn}/invocations" in json.dumps(local)
    assert "ApiFunctionAlias" in RESOURCES  # the template itself is untouched


VECTOR_INDEX_RESOURCES = ("VectorDbSubnetGroup", "VectorDbCluster", "VectorDbInstance")


def test_the_vector_index_exists_only_when_asked_for_and_is_reached_through_the_data_api():
    """VectorIndex=aurora (default none) makes an Aurora PostgreSQL Serverless v2 cluster with
    the Data API, its own Secrets Manager secret and the database the code names; nothing of it
    exists otherwise, and the API function's variables are then empty (the exact scan)."""
    from pipeline.settings import Settings

    assert TEMPLATE["Parameters"]["VectorIndex"]["Default"] == "none"
    conditions = TEMPLATE["Conditions"]
    assert conditions["WithVectorIndex"] == {"Fn::Equals": [{"Ref": "VectorIndex"}, "aurora"]}
    assert {"Condition": "WithVectorIndex"} in conditions["WithVectorDbSubnets"]["Fn::And"]
    kinds = ("AWS::RDS::DBCluster", "AWS::RDS::DBInstance", "AWS::RDS::DBSubnetGroup")
    rds = {name for name, r in RESOURCES.items() if r["Type"] in kinds}
    assert rds == set(VECTOR_INDEX_RESOURCES)
    for name in (*VECTOR_INDEX_RESOURCES, "VectorIndexPolicy"):
        assert RESOURCES[name]["Condition"] in ("WithVectorIndex", "WithVectorDbSubnets"), name
    cluster = RESOURCES["VectorDbCluster"]["Properties"]
    assert cluster["Engine"] == "aurora-postgresql"
    assert cluster["EnableHttpEndpoint"] is True
    assert cluster["ManageMasterUserPassword"] is True and "MasterUserPassword" not in cluster
    assert cluster["StorageEncrypted"] is True
    assert cluster["DatabaseName"] == Settings().vector_db_name
    scaling = cluster["ServerlessV2ScalingConfiguration"]
    assert scaling["MinCapacity"] == {"Ref": "VectorDbMinCapacity"}
    assert TEMPLATE["Parameters"]["VectorDbMinCapacity"]["Default"] == 0  # pauses when idle
    # the search's ef_search is the API function's, within pgvector's limits, default the code's
    ef_search = TEMPLATE["Parameters"]["VectorIndexEfSearch"]
    assert (ef_search["Default"], ef_search["MinValue"], ef_search["MaxValue"]) == (
        Settings().vector_index_ef_search,
        1,
        1000,
    )
    api_env = RESOURCES["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert api_env["IMGSIM_VECTOR_INDEX_EF_SEARCH"] == {"Ref": "VectorIndexEfSearch"}
    assert scaling["SecondsUntilAutoPause"]["Fn::If"][0] == "VectorDbPauses"
    # Aurora PostgreSQL 17 (17.4 is its first minor): pgvector 0.8, iterative index scans
    major, minor = TEMPLATE["Parameters"]["VectorDbEngineVersion"]["Default"].split(".")
    assert (int(major), int(minor)) >= (17, 4)
    instance = RESOURCES["VectorDbInstance"]["Properties"]
    assert instance["DBInstanceClass"] == "db.serverless"
    assert instance["DBClusterIdentifier"] == {"Ref": "VectorDbCluster"}
    # derived from the shards: deleted with the stack, no final snapshot
    for name in ("VectorDbCluster", "VectorDbInstance"):
        assert RESOURCES[name]["DeletionPolicy"] == "Delete", name
        assert RESOURCES[name]["UpdateReplacePolicy"] == "Delete", name
    env = RESOURCES["ApiFunction"]["Properties"]["Environment"]["Variables"]
    arn = {"Fn::GetAtt": ["VectorDbCluster", "DBClusterArn"]}
    secret = {"Fn::GetAtt": ["VectorDbCluster", "MasterUserSecret.SecretArn"]}
    assert env["IMGSIM_VECTOR_DB_CLUSTER_ARN"] == {"Fn::If": ["WithVectorIndex", arn, ""]}
    assert env["IMGSIM_VECTOR_DB_SECRET_ARN"] == {"Fn::If": ["WithVectorIndex", secret, ""]}
    assert env["IMGSIM_VECTOR_DB_NAME"] == {
        "Fn::If": ["WithVectorIndex", cluster["DatabaseName"], ""]
    }
    outputs = TEMPLATE["Outputs"]
    assert outputs["VectorDbClusterArn"] == {**outputs["VectorDbClusterArn"], "Value": arn}
    assert outputs["VectorDbSecretArn"]["Value"] == secret
    assert outputs["VectorIndexPolicyArn"]["Value"] == {"Ref": "VectorIndexPolicy"}
    for name in ("VectorDbClusterArn", "VectorDbSecretArn", "VectorIndexPolicyArn"):
        assert outputs[name]["Condition"] == "WithVectorIndex", name


def test_the_data_api_grants_name_the_cluster_and_its_secret_and_only_the_index_has_them():
    """The Data API runs as its caller and reads the secret as the caller: the API role (the
    policy attaches itself) and the Airflow role (the runbook attaches it) get the five rds-data
    actions on the cluster and GetSecretValue on its secret, in a policy that exists only with
    the index; no other statement of the template names rds-data or Secrets Manager."""
    policy = RESOURCES["VectorIndexPolicy"]
    assert policy["Properties"]["Roles"] == [{"Ref": "ApiFunctionRole"}]
    cluster = {"Fn::GetAtt": ["VectorDbCluster", "DBClusterArn"]}
    secret = {"Fn::GetAtt": ["VectorDbCluster", "MasterUserSecret.SecretArn"]}
    assert _granted("VectorIndexPolicy", cluster) == {
        "rds-data:ExecuteStatement",
        "rds-data:BatchExecuteStatement",
        "rds-data:BeginTransaction",
        "rds-data:CommitTransaction",
        "rds-data:RollbackTransaction",
    }
    assert _granted("VectorIndexPolicy", secret) == {"secretsmanager:GetSecretValue"}
    identities = {**_of_type("AWS::IAM::Role"), **_of_type("AWS::IAM::ManagedPolicy")}
    for name in set(identities) - {"VectorIndexPolicy"}:
        actions = json.dumps([s["Action"] for s in _statements(name)])
        assert "rds-data:" not in actions and "secretsmanager:" not in actions, name


def test_cfn_lint_passes_with_the_vector_index_on(tmp_path):
    """The same lint on a copy whose defaults turn the index on, in subnets of its own."""
    on = tmp_path / "template.yaml"
    text = TEMPLATE_PATH.read_text()
    for before, after in (
        (
            "    Default: none\n    AllowedValues: [none, aurora]",
            "    Default: aurora\n    AllowedValues: [none, aurora]",
        ),
        (
            '    Type: CommaDelimitedList\n    Default: ""',
            '    Type: CommaDelimitedList\n    Default: "subnet-0a1b2c3d,subnet-4e5f6a7b"',
        ),
    ):
        assert text.count(before) == 1
        text = text.replace(before, after)
    on.write_text(text)
    assert load_template(on)["Parameters"]["VectorIndex"]["Default"] == "aurora"
    matches = lint_file(on)
    assert matches == [], "\n".join(str(m) for m in matches)
