"""What each preflight answer means: a Check (pass, warn, fail, could not check, not asked) with
the fix. Pure functions of the AWS answers (or of the error each call raised), so every verdict
is tested without AWS; `probes` makes the calls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from pipeline.generation.model_status import (
    NOT_OFFERED_CODES,
    REGION_FIX,
    ModelUnavailable,
    model_status_of,
    not_offered_reason,
    verdict,
)

MARKETPLACE_ACTIONS = (
    "aws-marketplace:Subscribe, aws-marketplace:Unsubscribe and aws-marketplace:ViewSubscriptions"
)
MODEL_FIX = "choose an Active image model (IMGSIM_IMAGE_MODEL_ID, the template's ImageModelId)"


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "could not check"
    SKIPPED = "not asked"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.name,
            "status": self.status.value,
            "detail": self.detail,
            **({"fix": self.fix} if self.fix else {}),
        }


@dataclass(frozen=True)
class Answer:
    """One AWS call's outcome: its response, or the error code and message it raised."""

    response: Mapping[str, Any] | None = None
    code: str = ""
    message: str = ""

    def said(self, operation: str, region: str) -> str:
        """`operation in region answered CODE: message` (an HTML error page is left out)."""
        message = self.message.strip().splitlines()[0][:200] if self.message.strip() else ""
        tail = f": {message}" if message and not message.startswith("<") else ""
        return f"{operation} in {region} answered {self.code}{tail}"


def failures(checks: Iterable[Check]) -> list[Check]:
    return [check for check in checks if check.status == Status.FAIL]


def _not_offered(name: str, model_id: str, region: str) -> Check:
    return Check(name, Status.FAIL, not_offered_reason(model_id, region), REGION_FIX)


def _denied(answer: Answer) -> bool:
    return "AccessDenied" in answer.code


def model_offered(model_id: str, region: str, answer: Answer, today: date) -> Check:
    """GetFoundationModel in the Bedrock region: offered there, and Active."""
    name = "model offered and Active"
    if answer.response is None:
        if answer.code in NOT_OFFERED_CODES:
            return _not_offered(name, model_id, region)
        fix = "allow bedrock:GetFoundationModel to this identity" if _denied(answer) else ""
        return Check(name, Status.UNKNOWN, answer.said("GetFoundationModel", region), fix)
    status = model_status_of(model_id, dict(answer.response["modelDetails"]))
    try:
        legacy, message = verdict(status, today)
    except ModelUnavailable as exc:
        return Check(name, Status.FAIL, str(exc), MODEL_FIX)
    if legacy:
        return Check(name, Status.WARN, message, MODEL_FIX)
    return Check(name, Status.PASS, f"{model_id} is {status.status} in {region}")


def model_access(model_id: str, region: str, answer: Answer) -> Check:
    """GetFoundationModelAvailability: the region's availability, this identity's authorization,
    the account's Marketplace agreement and entitlement. A third-party model the account has not
    subscribed to yet is a warning: its first InvokeModel subscribes the account."""
    name = "model access (AWS Marketplace)"
    if answer.response is None:
        if answer.code in NOT_OFFERED_CODES:
            return _not_offered(name, model_id, region)
        fix = (
            "allow bedrock:GetFoundationModelAvailability to this identity"
            if _denied(answer)
            else ""
        )
        return Check(
            name, Status.UNKNOWN, answer.said("GetFoundationModelAvailability", region), fix
        )
    found = answer.response
    agreement = found.get("agreementAvailability") or {}
    status = agreement.get("status", "")
    if found.get("regionAvailability") == "NOT_AVAILABLE":
        return _not_offered(name, model_id, region)
    if found.get("authorizationStatus") == "NOT_AUTHORIZED":
        return Check(
            name,
            Status.FAIL,
            f"this identity is not authorized to use {model_id} (an IAM policy or SCP denies "
            "it, or the Marketplace permissions are missing)",
            f"allow bedrock:InvokeModel and {MARKETPLACE_ACTIONS} (the stack's roles have them); "
            "lift any service control policy that denies them",
        )
    if status == "ERROR":
        return Check(
            name,
            Status.FAIL,
            f"the account's Marketplace agreement for {model_id} failed: "
            f"{agreement.get('errorMessage') or 'no reason given'}",
            "give the account a valid payment method for AWS Marketplace purchases, then invoke "
            "the model once (the Bedrock console's playground will do)",
        )
    if status == "AVAILABLE" and found.get("entitlementAvailability") == "AVAILABLE":
        return Check(name, Status.PASS, f"the account may use {model_id} in {region}")
    if status == "PENDING":
        return Check(
            name,
            Status.WARN,
            f"the account's subscription to {model_id} is being finalized: calls may answer "
            "AccessDeniedException for a few minutes",
            "wait, then run preflight again",
        )
    return Check(
        name,
        Status.WARN,
        f"the account is not subscribed to {model_id} yet: its first InvokeModel subscribes it "
        f"through AWS Marketplace, which needs {MARKETPLACE_ACTIONS} for the calling role (the "
        "stack grants them) and a valid payment method on the account",
        "nothing to do, or invoke the model once ahead of time (the Bedrock console's "
        "playground) so that the first generation does not wait for the subscription",
    )


def transform_quota_name(instance_type: str) -> str:
    return f"{instance_type} for transform job usage"


def transform_quota(instance_type: str, count: int, region: str, answer: Answer) -> Check:
    """Service Quotas: may a batch transform run `count` instances of `instance_type`?"""
    name = "SageMaker transform quota"
    quota_name = transform_quota_name(instance_type)
    by_hand = (
        f"aws service-quotas list-service-quotas --service-code sagemaker --region {region} "
        f"--query \"Quotas[?QuotaName=='{quota_name}'].Value\""
    )
    if answer.response is None:
        return Check(name, Status.UNKNOWN, answer.said("ListServiceQuotas", region), by_hand)
    quota = next(
        (q for q in answer.response.get("Quotas", []) if q.get("QuotaName") == quota_name), None
    )
    if quota is None:
        return Check(
            name,
            Status.UNKNOWN,
            f"no SageMaker quota named '{quota_name}' in {region}",
            f"check the instance type (the embed_images param instance_type) or {by_hand}",
        )
    value = float(quota.get("Value", 0))
    if value < count:
        return Check(
            name,
            Status.FAIL,
            f"'{quota_name}' is {value:g} in {region}; a transform needs {count}",
            "aws service-quotas request-service-quota-increase --service-code sagemaker "
            f"--quota-code {quota.get('QuotaCode')} --desired-value {count} --region {region}",
        )
    return Check(name, Status.PASS, f"'{quota_name}' is {value:g} in {region}")


def mwaa_version(environment: str | None, region: str, target: str, answer: Answer | None) -> Check:
    """An existing MWAA environment's Airflow version against the one the bundle targets."""
    name = "MWAA Airflow version"
    create = f"aws mwaa create-environment --name ... --airflow-version {target} ..."
    if environment is None or answer is None:
        return Check(
            name,
            Status.SKIPPED,
            f"the bundle targets Airflow {target} (name an environment to check its version)",
            f"create the environment with Airflow {target}: {create}",
        )
    if answer.response is None:
        if answer.code == "ResourceNotFoundException":
            return Check(
                name,
                Status.FAIL,
                f"no MWAA environment named {environment} in {region}",
                f"name an existing environment, or {create}",
            )
        fix = "allow airflow:GetEnvironment to this identity" if _denied(answer) else ""
        return Check(name, Status.UNKNOWN, answer.said("GetEnvironment", region), fix)
    version = str(answer.response.get("Environment", {}).get("AirflowVersion", ""))
    if version != target:
        return Check(
            name,
            Status.FAIL,
            f"{environment} runs Airflow {version or 'an unknown version'}; the bundle targets "
            f"{target}",
            f"aws mwaa update-environment --name {environment} --airflow-version {target}",
        )
    return Check(name, Status.PASS, f"{environment} runs Airflow {version}")
