"""``ediv-host``: command-line entry of the host agent (JSON lines out, see agent-protocol.md)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ediv.agent import AGENT_VERSION, interrupts
from ediv.agent.config import DEFAULT_STATE_DIR, AgentConfig, load_config
from ediv.agent.events import Emitter
from ediv.agent.journal import ScenarioDir, list_keys
from ediv.agent.naming import derive_key
from ediv.errors import EdivError, InputError, WrongState
from ediv.protocol import (
    EVENT_DONE,
    EVENT_ERROR,
    EVENT_RESULT,
    EVENT_SESSION,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_WRONG_STATE,
    SESSION_LINE_MAX,
    VM_ACTIONS,
    KeyRequest,
    ProtocolError,
    SessionRequest,
    check_key,
    parse_json_object,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ediv-host", description="ediv host agent")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="per-scenario state")
    p.add_argument("--config", help="agent config (JSON or INI)")
    p.add_argument("--version", action="version", version=AGENT_VERSION)
    p.add_argument("--deadline", type=_seconds, metavar="SECONDS",
                   help="stop the verb's work (rolling a deploy back) and fail when it takes "
                        "longer than this")
    p.add_argument("--heartbeat", type=_seconds, metavar="SECONDS",
                   help="write an 'alive' event this often; a deploy whose reader is gone "
                        "(controller killed) rolls itself back")
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("probe", help="load, CPUs, memory, kernel features")
    r = sub.add_parser("receive", help="store the bundle on stdin for 'deploy --key'")
    r.add_argument("--key", required=True, help="scenario key")
    d = sub.add_parser("deploy", help="deploy a bundle (tar on stdin, --bundle, or the one "
                                      "received for --key)")
    d.add_argument("--bundle", help="bundle directory or tar file instead of stdin")
    d.add_argument("--key", help="deploy the bundle 'receive' stored for this key, taking "
                                 "the scenario's lock before anything else")
    d.add_argument("--keep-on-error", action="store_true",
                   help="leave a failed deploy in place for inspection (release removes it)")
    e = sub.add_parser("exec", help="run a command sequence")
    e.add_argument("seq")
    e.add_argument("--vm", action="append", dest="vms", metavar="VM",
                   help="only this VM (repeatable; host commands then do not run)")
    for verb, text in (("release", "remove a scenario"), ("status", "state of scenarios"),
                       ("purge", "remove one scenario, or every scenario of the state dir")):
        sp = sub.add_parser(verb, help=text)
        _key_args(sp)
    _key_args(e)
    v = sub.add_parser("vm", help="start, stop (graceful), reboot or reset (hard) one VM")
    _key_args(v)
    v.add_argument("vm")
    v.add_argument("action", choices=VM_ACTIONS)
    c = sub.add_parser("console", help="a shell in a VM, or one command: console VM [-- CMD]")
    _key_args(c)
    c.add_argument("vm")
    c.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("session", help="run the requests on stdin (JSON lines) one after another "
                                   "in this one agent process (the controller's way)")
    return p


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 10**7:
        raise argparse.ArgumentTypeError(f"seconds out of range: {text!r}")
    return value


def _key_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--key", help="scenario key")
    sp.add_argument("--scenario", help="scenario name (key looked up or derived)")


def resolve_key(state_root: Path, key: str | None, scenario: str | None,
                request: KeyRequest | None = None) -> str | None:
    if not key and not scenario and request is not None:
        key, scenario = request.key, request.scenario
    if key:
        return check_key(key, "--key")
    if scenario:
        for k in list_keys(state_root):
            sd = ScenarioDir(state_root, k)
            if (sd.read_json(sd.meta_path) or {}).get("scenario") == scenario:
                return k
        return derive_key(scenario)
    return None


def _stdin_request(stdin: IO[bytes] | None) -> KeyRequest | None:
    """The ``{"key": ...}`` / ``{"scenario": ...}`` object on stdin, checked (ediv.protocol)."""
    if stdin is None:
        if sys.stdin is None or sys.stdin.isatty():
            return None
        stdin = sys.stdin.buffer
    data = parse_json_object(stdin.read(), "stdin")
    return KeyRequest.from_json(data) if data is not None else None


def run_verb(args: argparse.Namespace, config: AgentConfig, em: Emitter,
             stdin: IO[bytes] | None = None) -> dict[str, Any]:
    """Run one verb; ``stdin``: its input (default: the process's stdin)."""
    state_root = Path(args.state_dir)
    data_in = stdin if stdin is not None else sys.stdin.buffer
    if args.verb == "probe":
        from ediv.agent.probe import probe

        # what this agent lets a scenario change on the host (the controller checks it first)
        return {**probe(), "allow": {"external": config.allow_external,
                                     "hostif": config.allow_hostif,
                                     "host_exec": config.allow_host_exec}}
    if os.geteuid() != 0:
        raise EdivError(f"ediv-host {args.verb} must run as root")
    if args.verb == "receive":
        from ediv.agent.deploy import receive

        return receive(state_root, check_key(args.key), data_in)
    if args.verb == "deploy":
        from ediv.agent.deploy import deploy, deploy_received

        if args.key:
            if args.bundle:
                raise InputError("deploy takes --key or --bundle, not both")
            return deploy_received(state_root, check_key(args.key), config, em,
                                   keep_on_error=args.keep_on_error)
        source = args.bundle if args.bundle else data_in
        return deploy(state_root, source, config, em, keep_on_error=args.keep_on_error)
    needs_key = args.verb in ("exec", "release")
    if args.verb == "vm":
        from ediv.agent.vmstate import change_vm_state

        key = resolve_key(state_root, args.key, args.scenario)
        if key is None:
            raise InputError("vm needs --key or --scenario")
        return change_vm_state(state_root, key, args.vm, args.action, config, em)
    if args.verb == "console":
        from ediv.agent.console import console

        key = resolve_key(state_root, args.key, args.scenario)
        if key is None:
            raise InputError("console needs --key or --scenario")
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        sys.exit(console(state_root, key, args.vm, command, config))
    key = resolve_key(state_root, args.key, args.scenario,
                      _stdin_request(stdin) if not (args.key or args.scenario) and needs_key
                      else None)
    if args.verb == "exec":
        if key is None:
            raise InputError("exec needs --key or --scenario")
        from ediv.agent.context import open_deployed
        from ediv.agent.execute import run_sequence

        ctx, drivers = open_deployed(state_root, key, config, em)
        with ctx.sdir.lock():
            if args.vms:
                unknown = sorted(set(args.vms) - {v.name for v in ctx.layout.vms})
                if unknown:
                    raise InputError(f"no VM {', '.join(unknown)} in scenario {key} on this host")
            res = run_sequence(ctx, drivers, args.seq,
                               vms=set(args.vms) if args.vms else None)
        return {"key": key, **res}
    if args.verb in ("release", "purge"):
        from ediv.agent.release import purge, release

        if key is None and args.verb == "release":
            raise InputError("release needs --key or --scenario")
        if key is None:
            return {"released": purge(state_root, em)}
        return {"released": [release(state_root, key, em)]}
    if args.verb == "status":
        from ediv.agent.status import status

        return status(state_root, key)
    raise InputError(f"unknown verb {args.verb}")


class Terminated(EdivError):
    """SIGTERM/SIGHUP: raised in the main thread so a deploy rolls back before exiting."""


_signalled: list[int] = []  # a session ends after the request a signal stopped


def _on_signal(signum: int, _frame: object) -> None:
    _signalled.append(signum)
    interrupts.stop(Terminated(f"terminated by signal {signal.Signals(signum).name}"))


def _start_deadline(verb: str, limit: float | None) -> None:
    """The verb's deadline: a real-time timer, so it also fires for an agent that was
    stopped and resumed late."""
    if not limit:
        return

    def over(_signum: int, _frame: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        interrupts.stop(Terminated(f"{verb}: deadline of {limit:g} s passed; work stopped"))

    signal.signal(signal.SIGALRM, over)
    signal.setitimer(signal.ITIMER_REAL, limit)


def _stop_deadline() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


def _start_heartbeat(period: float | None, em: Emitter, verb: Callable[[], str | None]) -> None:
    """An ``alive`` event every ``period`` s; when nobody reads us any more (the controller
    is gone), a running deploy or exec (``verb()``) stops: deploy rolls back."""
    if not period:
        return

    def beat() -> None:
        while True:
            time.sleep(period)
            em.emit("alive")
            if em.broken:
                if verb() in ("deploy", "exec"):  # a release carries on regardless
                    os.kill(os.getpid(), signal.SIGTERM)  # roll back in the main thread
                return

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()


def _answer(args: argparse.Namespace, em: Emitter, stdin: IO[bytes] | None = None,
            config: AgentConfig | None = None) -> int:
    """Run one verb: its events, then one result or error line; its exit status."""
    try:
        result = run_verb(args, config or load_config(args.config), em, stdin)
    except InputError as e:
        em.emit(EVENT_ERROR, message=str(e), diagnostics=[str(d) for d in e.diagnostics])
        return EXIT_ERROR
    except WrongState as e:
        em.emit(EVENT_ERROR, message=str(e))
        return EXIT_WRONG_STATE
    except EdivError as e:
        em.emit(EVENT_ERROR, message=str(e))
        return EXIT_ERROR
    except KeyboardInterrupt:
        em.emit(EVENT_ERROR, message="interrupted")
        return EXIT_INTERRUPTED
    except Exception as e:  # an agent bug: say so, with the traceback on stderr
        traceback.print_exc()
        em.emit(EVENT_ERROR, message=f"internal error: {type(e).__name__}: {e}")
        return EXIT_INTERNAL
    ok = result.pop("ok", True) if isinstance(result, dict) else True
    em.emit(EVENT_RESULT, ok=ok, **result)
    return EXIT_OK if ok else EXIT_FAILED


class _Exact(io.RawIOBase):
    """The next ``size`` bytes of ``stream`` and no more (a request's input)."""

    def __init__(self, stream: IO[bytes], size: int):
        self.stream, self.left = stream, size

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        if self.left <= 0:
            return 0
        data = self.stream.read(min(len(buf), self.left, 1 << 20))
        if not data:
            raise ProtocolError(f"the input ended {self.left} bytes short", "session")
        buf[: len(data)] = data
        self.left -= len(data)
        return len(data)

    def drain(self) -> None:
        while self.left > 0 and self.readinto(bytearray(min(self.left, 1 << 20))):
            pass


def _request_args(parser: argparse.ArgumentParser, session: argparse.Namespace,
                  req: SessionRequest) -> argparse.Namespace:
    """A request's verb and arguments parsed as on the command line; the agent's own options
    (state dir, config, heartbeat) stay the session's: a request cannot change them."""
    try:
        args = parser.parse_args([req.verb, *req.args])
    except SystemExit:  # argparse said why on stderr
        raise ProtocolError(f"bad arguments for {req.verb}: {' '.join(req.args)[:200]}",
                            "session") from None
    args.state_dir, args.config = session.state_dir, session.config
    args.heartbeat, args.deadline = session.heartbeat, req.deadline
    return args


def _warm(module: str) -> None:
    """Import ``module`` now, while the session waits for its next request; a failure is
    left for the verb that needs it to report (a signal meanwhile: the caller ends)."""
    with contextlib.suppress(Exception):
        importlib.import_module(module)


def run_session(parser: argparse.ArgumentParser, session: argparse.Namespace,
                em: Emitter) -> int:
    """``ediv-host session``: one agent process for a controller's whole command. Each
    request line (:class:`SessionRequest`, then its input bytes) runs as the verb would
    with the session's options, answered with the verb's events, its result or error line
    and a ``done`` line with the exit status the verb would have had. Ends at end of input
    (exit 0), on a request it cannot read (exit 1), or after the request a signal stopped."""
    # the requests come on a private copy of stdin; fd 0 becomes /dev/null, so no process
    # the agent starts (VM inits, tools) can read a request or a bundle meant for the agent
    stdin = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    current: list[str | None] = [None]
    _start_heartbeat(session.heartbeat, em, lambda: current[0])
    try:
        config = load_config(session.config)
    except EdivError as e:
        em.emit(EVENT_ERROR, message=str(e))
        return EXIT_ERROR
    em.emit(EVENT_SESSION, pid=os.getpid(), version=AGENT_VERSION)
    while True:
        try:
            line = stdin.readline(SESSION_LINE_MAX + 1)
        except Terminated:
            return EXIT_INTERRUPTED
        if not line:
            return EXIT_OK
        try:
            if len(line) > SESSION_LINE_MAX or not line.endswith(b"\n"):
                raise ProtocolError(f"a request line longer than {SESSION_LINE_MAX} bytes",
                                    "session")
            req = SessionRequest.from_json(json.loads(line))
        except (ValueError, RecursionError, ProtocolError) as e:  # framing lost: stop here
            em.emit(EVENT_ERROR, message=f"bad request: {e}")
            em.emit(EVENT_DONE, status=EXIT_ERROR)
            return EXIT_ERROR
        data = _Exact(stdin, req.size)
        interrupts.reset()  # a deadline stopped the last request: this one starts afresh
        current[0] = req.verb
        try:
            try:
                args = _request_args(parser, session, req)
            except ProtocolError as e:
                em.emit(EVENT_ERROR, message=str(e))
                status = EXIT_ERROR
            else:
                _start_deadline(req.verb, req.deadline)
                try:
                    status = _answer(args, em, io.BufferedReader(data), config)
                finally:
                    _stop_deadline()
            data.drain()
        except (Terminated, ProtocolError) as e:  # between the verb's end and here
            em.emit(EVENT_ERROR, message=str(e))
            status = EXIT_ERROR
        finally:
            current[0] = None
        em.emit(EVENT_DONE, status=status)
        if _signalled or em.broken:
            return EXIT_INTERRUPTED if _signalled else status
        if req.verb == "probe":  # a deploy's receive and deploy come next: their code is
            _warm("ediv.agent.deploy")  # imported while the controller plans, not after
            if _signalled:
                return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """``ediv-host VERB``: one verb per run, JSON lines out (events, then one result or error
    line), exit codes of ``ediv.protocol``; SIGTERM/SIGHUP stop it cleanly. ``session``: many
    verbs in one run (``run_session``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    em = Emitter(sys.stdout)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    if args.verb == "session":
        return run_session(parser, args, em)
    _start_deadline(args.verb, args.deadline)
    _start_heartbeat(args.heartbeat, em, lambda: args.verb)
    return _answer(args, em)


if __name__ == "__main__":
    sys.exit(main())
