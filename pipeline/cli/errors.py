"""The exit codes scripts can rely on, and the one error type that carries them."""

from __future__ import annotations

OK = 0
FAILED = 1  # the API refused a request, a run failed, an image failed or was refused
USAGE = 2  # bad arguments (click's own code for usage errors)
NOT_RUNNING = 3  # no stack to talk to: not started, or not reachable
TIMED_OUT = 4  # --wait gave up before the pipeline finished

EXIT_CODES = {
    OK: "success",
    FAILED: "the API answered an error, or the pipeline reported a failure",
    USAGE: "usage error (bad option, no image file among the paths)",
    NOT_RUNNING: "the stack is not running or cannot be reached",
    TIMED_OUT: "gave up waiting (--timeout)",
}


class CliError(Exception):
    """Printed as `Error: <message>` on stderr; the process exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
