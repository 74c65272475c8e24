"""The preflight's verdicts on AWS answers the local stack cannot give (moto serves no
ListServiceQuotas and no MWAA; the emulator's models are Active or past their end of life)."""

from datetime import UTC, date, datetime

from pipeline.preflight.checks import (
    Answer,
    Status,
    model_access,
    model_offered,
    mwaa_version,
    transform_quota,
)

TITAN = "amazon.titan-image-generator-v2:0"


def _details(status: str, end: date | None = None) -> Answer:
    cycle: dict = {"status": status}
    if end:
        cycle["endOfLifeTime"] = datetime(end.year, end.month, end.day, tzinfo=UTC)
    return Answer(response={"modelDetails": {"modelId": TITAN, "modelLifecycle": cycle}})


def test_a_legacy_model_warns_and_one_past_its_end_of_life_fails():
    legacy = model_offered(
        TITAN, "us-west-2", _details("LEGACY", date(2026, 6, 30)), date(2026, 1, 1)
    )
    assert legacy.status == Status.WARN and "IMGSIM_IMAGE_MODEL_ID" in legacy.fix
    ended = model_offered(
        TITAN, "us-west-2", _details("LEGACY", date(2026, 6, 30)), date(2026, 7, 1)
    )
    assert ended.status == Status.FAIL and "end of life on 2026-06-30" in ended.detail


def test_an_identity_that_may_not_ask_is_told_which_action_to_allow():
    denied = Answer(code="AccessDeniedException", message="not authorized")
    check = model_offered(TITAN, "us-west-2", denied, date(2026, 1, 1))
    assert check.status == Status.UNKNOWN and "bedrock:GetFoundationModel" in check.fix
    access = model_access(TITAN, "us-west-2", denied)
    assert access.status == Status.UNKNOWN
    assert "bedrock:GetFoundationModelAvailability" in access.fix


def test_a_pending_subscription_is_a_warning():
    pending = Answer(
        response={
            "agreementAvailability": {"status": "PENDING"},
            "authorizationStatus": "AUTHORIZED",
            "entitlementAvailability": "NOT_AVAILABLE",
            "regionAvailability": "AVAILABLE",
        }
    )
    assert model_access(TITAN, "us-west-2", pending).status == Status.WARN


def _quotas(value: float) -> Answer:
    quota = {
        "QuotaName": "ml.g5.xlarge for transform job usage",
        "QuotaCode": "L-ABC123",
        "Value": value,
    }
    other = {"QuotaName": "ml.m5.xlarge for transform job usage", "QuotaCode": "L-X", "Value": 9}
    return Answer(response={"Quotas": [other, quota]})


def test_a_transform_quota_below_the_instance_count_fails_with_the_increase_request():
    check = transform_quota("ml.g5.xlarge", 2, "eu-west-1", _quotas(0))
    assert check.status == Status.FAIL
    assert "'ml.g5.xlarge for transform job usage' is 0 in eu-west-1" in check.detail
    assert "request-service-quota-increase" in check.fix and "--quota-code L-ABC123" in check.fix
    assert "--desired-value 2" in check.fix
    assert transform_quota("ml.g5.xlarge", 2, "eu-west-1", _quotas(2)).status == Status.PASS


def test_an_instance_type_without_a_transform_quota_is_not_guessed():
    check = transform_quota("ml.p9.huge", 1, "eu-west-1", _quotas(1))
    assert check.status == Status.UNKNOWN and "ml.p9.huge for transform job usage" in check.detail


def test_the_mwaa_environment_must_run_the_version_the_bundle_targets():
    older = Answer(response={"Environment": {"Name": "env", "AirflowVersion": "3.0.6"}})
    check = mwaa_version("env", "eu-west-1", "3.3.1", older)
    assert check.status == Status.FAIL and "runs Airflow 3.0.6" in check.detail
    assert check.fix == "aws mwaa update-environment --name env --airflow-version 3.3.1"
    same = Answer(response={"Environment": {"AirflowVersion": "3.3.1"}})
    assert mwaa_version("env", "eu-west-1", "3.3.1", same).status == Status.PASS
    gone = Answer(code="ResourceNotFoundException", message="no such environment")
    assert mwaa_version("env", "eu-west-1", "3.3.1", gone).status == Status.FAIL
    assert mwaa_version(None, "eu-west-1", "3.3.1", None).status == Status.SKIPPED
