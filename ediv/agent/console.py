"""``ediv-host console``: a shell inside a VM, or one command in it.

Containers: ``nsenter`` into the VM's init (a real interactive shell when a terminal is
attached). UML: one command runs through the driver's exec channel; without a command, a
line-by-line shell over the same channel (the pty console con1 is shown for ``screen``).
"""

from __future__ import annotations

import io
import os
import shlex
import sys
from pathlib import Path

from ediv.agent.config import AgentConfig
from ediv.agent.context import open_deployed
from ediv.agent.events import Emitter
from ediv.errors import EdivError


def console(state_root: Path, key: str, vm_name: str, command: list[str],
            config: AgentConfig) -> int:
    ctx, drivers = open_deployed(state_root, key, config, Emitter(io.StringIO()))
    vm = ctx.layout.vm(vm_name)
    if vm is None:
        raise EdivError(f"no VM {vm_name!r} in scenario {key} on this host")
    driver = drivers[vm.driver]
    if vm.driver == "container":
        from ediv.agent.drivers.container import NSENTER_ALL
        from ediv.agent.proc import base_env

        pid = driver._pid(ctx, vm)
        # the argument vector goes to the VM as it came: no joining, no shell in between
        argv = ["nsenter", "-t", str(pid), *NSENTER_ALL, "--", *(command or ["/bin/sh"])]
        env = base_env(TERM=os.environ.get("TERM", "dumb"), PS1=f"{vm_name}# ")
        os.execvpe("nsenter", argv, env)
    if command:
        # the guest runs one shell line: quote each word so it parses back to ``command``
        result = driver.exec(ctx, vm, [shlex.join(command)])[0]
        sys.stdout.write(result.output)
        return result.exit_code
    pty = ctx.runtime.get(vm_name, {}).get("console")
    print(f"{vm_name}: line shell over the exec channel (each line runs on its own; "
          f"the VM's console is {pty or 'unknown'}). End with Ctrl-D.", file=sys.stderr)
    rc = 0
    while True:
        sys.stderr.write(f"{vm_name}# ")
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            return rc
        if line.strip():
            result = driver.exec(ctx, vm, [line.rstrip("\n")])[0]
            sys.stdout.write(result.output)
            sys.stdout.flush()
            rc = result.exit_code
