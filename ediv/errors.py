"""Errors that reach the user: one message per problem, ``file:line: message``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    source: str
    line: int
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{self.message}"


class EdivError(Exception):
    """An error with a message meant for the user (no traceback is shown)."""


class InputError(EdivError):
    """Bad input: carries every diagnostic found, not only the first."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic | str, source: str = ""):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(source or "error", 0, diagnostics)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class PlanError(EdivError):
    """The cluster cannot hold the scenario, or restrictions cannot all hold."""


class WrongState(EdivError):
    """The request does not apply to the present state (a stopped VM cannot reboot)."""
