"""`preflight`: before deploying, whether the account can run the stack (pipeline.preflight)."""

from __future__ import annotations

from pipeline.cli.errors import FAILED, CliError
from pipeline.cli.output import Output
from pipeline.preflight.checks import failures
from pipeline.preflight.probes import Plan, run
from pipeline.settings import Settings


def preflight(settings: Settings, plan: Plan, out: Output) -> None:
    where = f"Bedrock in {settings.bedrock_region}, the rest in {settings.region}"
    with out.busy(f"asking AWS ({where}) ..."):
        checks = run(settings, plan)
    out.table(
        f"preflight ({where})",
        ["check", "status", "detail", "fix"],
        [check.as_dict() for check in checks],
    )
    out.data([check.as_dict() for check in checks])
    failed = failures(checks)
    if failed:
        raise CliError(
            f"{len(failed)} check(s) failed: " + "; ".join(c.name for c in failed), FAILED
        )
    out.say("no check failed")
