"""Holds a scenario's user namespace while the agent creates network namespaces in it (run as
a script: stdlib only).

``python nsholder.py`` unshares a new user namespace; ``python nsholder.py PATH`` joins the
user namespace at PATH (``/proc/PID/ns/user`` of the first holder: several holders fill one
user namespace in parallel). Then, on stdout, ``user``; the agent writes the maps (first
holder) and sends one ``net`` line per network namespace it wants. For each, this process
unshares a new network namespace, owned by the user namespace, and answers ``net`` (or
``error TEXT``); the agent bind-mounts ``/proc/PID/ns/net`` before its next line. EOF ends it.

One process for every network namespace of a verb, instead of an ``unshare --user --net
sleep`` (two execs and a user namespace) per VM: that was about 6 ms of CPU per VM.
"""

import ctypes
import os
import sys

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def _say(text: str) -> None:
    os.write(1, (text.replace("\n", " ") + "\n").encode(errors="replace"))


def _error(what: str) -> str:
    return f"error {what}: {os.strerror(ctypes.get_errno())}"


def main() -> int:
    if len(sys.argv) > 1:
        fd = os.open(sys.argv[1], os.O_RDONLY | os.O_CLOEXEC)
        ok = libc.setns(fd, CLONE_NEWUSER) == 0
        os.close(fd)
    else:
        ok = libc.unshare(CLONE_NEWUSER) == 0
    if not ok:
        _say(_error("user namespace"))
        return 1
    _say("user")
    for line in sys.stdin.buffer:
        if line.strip() != b"net":
            _say(f"error unknown request {line[:40]!r}")
            return 1
        _say("net" if libc.unshare(CLONE_NEWNET) == 0 else _error("network namespace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
