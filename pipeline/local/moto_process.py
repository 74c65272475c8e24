"""`python -m pipeline.local.moto_process`: moto's server with its request recorder serialised
and its IAM enforcement closer to AWS's (`pipeline.local.moto_iam`).

moto writes each recorded request in two `write()` calls with no lock, so under concurrent
requests larger records interleave, and the replay at the next `up` cannot parse them. One lock
around each record keeps every line whole; everything else is moto's own server.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.moto_api._internal.recorder.models import Recorder
from moto.server import main

from pipeline.local.moto_iam import authorize_like_aws


def serialise_recorder() -> None:
    """Make Recorder._record_request write one whole record at a time (idempotent)."""
    record = Recorder._record_request
    if getattr(record, "serialised", False):
        return
    lock = threading.Lock()

    def locked(self: Recorder, request: Any, body: bytes | None = None) -> None:
        with lock:
            record(self, request, body)

    locked.serialised = True  # type: ignore[attr-defined]
    Recorder._record_request = locked  # type: ignore[method-assign]


if __name__ == "__main__":
    serialise_recorder()
    authorize_like_aws()
    main()
