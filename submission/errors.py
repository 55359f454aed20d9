"""`SubmitError`: a submission that did not reach the orchestrator, or that it refused, as one line naming what
failed (the host or project, the HTTP status). The CLI prints it with the path of the compiled spec, which is kept,
and exits with EXIT_SUBMIT_FAILED (trainer/exit_codes.py)."""
from __future__ import annotations


class SubmitError(Exception):
    """One line: which server or project, and what went wrong there."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an error's message (the type's name when it has none), cut at `limit` characters."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= limit else text[:limit] + " …"
