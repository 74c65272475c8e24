"""How long a call to Bedrock may take, retries included, so GET /images answers inside API
Gateway's 29 s and campaign tasks wait as long as a slow model needs."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.config import Config


@dataclass(frozen=True)
class RetryBudget:
    """How long one generation may take, retries included: botocore's standard mode makes up
    to `attempts` calls, each allowed `connect_timeout` + `read_timeout`, with a full-jitter
    backoff capped at 1, 2, 4 ... s between them."""

    attempts: int
    connect_timeout: float
    read_timeout: float

    def worst_case_seconds(self) -> float:
        backoff = sum(min(20, 2**i) for i in range(self.attempts - 1))
        return self.attempts * (self.connect_timeout + self.read_timeout) + backoff

    def config(self) -> Config:
        return Config(
            retries={"mode": "standard", "total_max_attempts": self.attempts},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
        )


# GET /images answers within API Gateway's 29 s integration timeout with room for storing and
# recording the image: two calls of at most 11 s and one backoff of at most 1 s, after (on a
# container's first generation) one lifecycle check of at most 3 s.
API_BUDGET = RetryBudget(attempts=2, connect_timeout=2, read_timeout=9)
LIFECYCLE_BUDGET = RetryBudget(attempts=1, connect_timeout=1, read_timeout=2)
# A campaign task has no caller waiting: more tries, and the time a slow model needs.
CAMPAIGN_BUDGET = RetryBudget(attempts=6, connect_timeout=5, read_timeout=60)
