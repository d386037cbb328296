"""The exit codes of `recur`, one meaning each (README, "Operating Recur")."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    UNEXPECTED = 1  # a bug, or an error nothing below describes
    USAGE = 2  # a bad command line (click's own code for usage errors)
    NOT_FOUND = 3  # the subscription, customer, plan or key does not exist
    REJECTED = 4  # the API refused: a conflict (409), invalid input (422), auth (401/403)
    DECLINED = 5  # the card was declined (a retry that failed, a refused payment method)
    UNREACHABLE = 6  # the API, the database or what the API needs could not be reached
    OPEN_RUNS = 7  # `recur ops open-runs` found open runs (a deploy that drops their code waits)


class CliError(Exception):
    """A failure to report: the message names the address involved; `code` is the exit."""

    def __init__(self, message: str, exit_code: Exit, error_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.error_code = error_code
