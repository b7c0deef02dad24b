"""Run a command as root of a container VM (run as a script: stdlib only).

``center.py PID CAPS -- ARGV...``: enter every namespace of VM init ``PID`` (the user
namespace last: it resets the bounding set, so the capabilities in CAPS — comma-separated
numbers — are dropped after it), take the VM's root and cwd, become uid/gid 0 of the VM and
exec ARGV in a child (a PID namespace applies to children); exit with its status.
``nsenter`` cannot drop bounding capabilities after entering a user namespace, and
``setpriv`` run before it is undone by the user namespace.
"""

import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000
PR_CAPBSET_DROP = 24
ORDER = ("ipc", "uts", "net", "pid", "mnt")
libc = ctypes.CDLL(None, use_errno=True)


def die(what: str) -> None:
    sys.stderr.write(f"ediv-enter: {what}: {os.strerror(ctypes.get_errno())}\n")
    sys.exit(126)


def main() -> None:
    pid, caps, sep, *argv = sys.argv[1:]
    if sep != "--" or not argv:
        sys.exit("usage: center.py PID CAPS -- ARGV...")
    fds = {ns: os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY) for ns in (*ORDER, "user")}
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    cwd = os.open(f"/proc/{pid}/cwd", os.O_RDONLY | os.O_DIRECTORY)
    for ns in ORDER:
        if libc.setns(fds[ns], 0) != 0:
            die(f"entering {ns} namespace")
    if libc.setns(fds["user"], CLONE_NEWUSER) != 0:
        die("entering the user namespace")
    os.fchdir(root)
    os.chroot(".")
    os.fchdir(cwd)
    for fd in (*fds.values(), root, cwd):
        os.close(fd)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    for cap in filter(None, caps.split(",")):
        if libc.prctl(PR_CAPBSET_DROP, int(cap), 0, 0, 0) != 0:
            die(f"dropping capability {cap}")
    child = os.fork()
    if child == 0:
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            sys.stderr.write(f"ediv-enter: {argv[0]}: {e.strerror}\n")
            os._exit(127)
    _, status = os.waitpid(child, 0)
    sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else
             128 + os.WTERMSIG(status))


if __name__ == "__main__":
    main()
