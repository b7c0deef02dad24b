"""Errors that reach the user: one message per problem, ``file:line: message``.

Each named error carries the fields a front end needs, and :data:`CODES` is the one table
that says how the front ends show it: the ``ediv`` command's exit status and the CIM status
code of the CIMError the WBEM server answers with (plain ints: ediv/ never imports pywbem).
"""

from __future__ import annotations

from dataclasses import dataclass

# CIM status codes (DSP0200) used by the table below, as plain ints
CIM_ERR_FAILED = 1
CIM_ERR_INVALID_PARAMETER = 4
CIM_ERR_NOT_FOUND = 6
CIM_ERR_ALREADY_EXISTS = 11

EXIT_ERROR = 1  # the ediv command's exit status for an error
EXIT_WRONG_STATE = 4  # the request does not apply to the present state (reboot a stopped VM)


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
    """The request does not apply to the present state (a stopped VM cannot reboot, a
    deployed scenario cannot be deployed again). ``state`` is the present state, if known."""

    def __init__(self, message: str, *, name: str | None = None, state: str | None = None):
        super().__init__(message)
        self.name = name
        self.state = state


class NotFound(EdivError):
    """No such thing: ``what`` (scenario, VM, host, job...) named ``name``; for a VM or a
    sequence, ``scenario`` is the scenario asked about and ``known`` what it does have."""

    def __init__(self, what: str, name: str, *, scenario: str | None = None,
                 known: list[str] | None = None, message: str | None = None):
        self.what = what
        self.name = name
        self.scenario = scenario
        self.known = known
        if message is None:
            if scenario is None:
                message = f"no {what} named {name!r}"
            else:
                message = f"scenario {scenario!r} has no {what} named {name!r}"
            if known is not None:
                message += f" (it has: {', '.join(known) or 'none'})"
        super().__init__(message)


class AlreadyExists(EdivError):
    """A scenario (or VM) of that name exists already, in ``state``."""

    def __init__(self, what: str, name: str, *, state: str | None = None,
                 message: str | None = None):
        self.what = what
        self.name = name
        self.state = state
        super().__init__(message or f"{what} {name!r} is already {state or 'defined'}")


class Busy(EdivError):
    """Another call holds the scenario's claim: ``doing`` is what it does, ``owner`` the
    process (host:pid:start) that holds it."""

    def __init__(self, name: str, doing: str | None = None, owner: str | None = None):
        self.name = name
        self.doing = doing
        self.owner = owner
        what = f" ({doing})" if doing else ""
        by = f" by {owner}" if owner else ""
        super().__init__(f"scenario {name!r} is busy{what}: being changed{by}; try later")


def no_scenario(name: str) -> NotFound:
    """The one "no scenario named ..." error."""
    return NotFound("scenario", name)


# error class -> (ediv exit status, CIM status code); the most specific class wins
CODES: dict[type[BaseException], tuple[int, int]] = {
    InputError: (EXIT_ERROR, CIM_ERR_INVALID_PARAMETER),
    NotFound: (EXIT_ERROR, CIM_ERR_NOT_FOUND),
    AlreadyExists: (EXIT_ERROR, CIM_ERR_ALREADY_EXISTS),
    Busy: (EXIT_ERROR, CIM_ERR_FAILED),
    WrongState: (EXIT_WRONG_STATE, CIM_ERR_FAILED),
    PlanError: (EXIT_ERROR, CIM_ERR_FAILED),
    EdivError: (EXIT_ERROR, CIM_ERR_FAILED),
}


def codes(exc: BaseException) -> tuple[int, int]:
    """(exit status, CIM status) of an error, from :data:`CODES` (by the class's MRO)."""
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls]
    return EXIT_ERROR, CIM_ERR_FAILED


def exit_code(exc: BaseException) -> int:
    return codes(exc)[0]


def cim_status(exc: BaseException) -> int:
    return codes(exc)[1]


def message(exc: BaseException) -> str:
    """The text a front end shows: every diagnostic of an InputError, one line each."""
    if isinstance(exc, InputError):
        return "\n".join(str(d) for d in exc.diagnostics)
    return str(exc)
