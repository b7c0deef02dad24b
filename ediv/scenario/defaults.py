"""``<vm_defaults>``: a VM's effective settings, as VNUML computed them, in one pure function.

Rules (VNUML 1.8's ``<vm_defaults>`` children, per element):
- one-valued elements and attributes (``exec_mode``, ``filesystem``, ``mem``, ``kernel``,
  ``shell``, ``basedir``, ``mng_if``, ``xterm``, ``forwarding``): the VM's own wins, the
  default fills in what the VM leaves out;
- ``console``: per console id, the VM's own wins;
- ``route``, ``user``, ``filetree``: the defaults are added to every VM, before the VM's own
  (a VM's ``<user>`` of the same name replaces the default one; a route to the same
  destination too);
- text elements kept for round trips (``extra``): the VM's own wins.
Nothing is mutated: callers get a new ``VM`` (or the same one when there is nothing to add).
"""

from __future__ import annotations

from dataclasses import replace

from ediv.scenario.model import VM, Scenario, VmDefaults

ONE_VALUED = ("exec_mode", "filesystem", "mem", "kernel", "shell", "basedir", "mng_if", "xterm",
              "forwarding")


def inherited(vm: VM, defaults: VmDefaults | None, attr: str):
    """One one-valued setting of ``vm`` with ``defaults`` applied, without building the
    whole effective VM (what the partitioners and checks need per VM)."""
    own = getattr(vm, attr)
    return own if own is not None or defaults is None else getattr(defaults, attr)


def effective_vm(vm: VM, defaults: VmDefaults | None) -> VM:
    """``vm`` with ``defaults`` applied (see the module docstring)."""
    if defaults is None:
        return vm
    changes: dict = {a: getattr(defaults, a) for a in ONE_VALUED
                     if getattr(vm, a) is None and getattr(defaults, a) is not None}
    if defaults.consoles:
        own = {c.id for c in vm.consoles}
        changes["consoles"] = [c for c in defaults.consoles if c.id not in own] + vm.consoles
    if defaults.routes:
        own_dest = {(r.type, r.destination) for r in vm.routes}
        changes["routes"] = [r for r in defaults.routes
                             if (r.type, r.destination) not in own_dest] + vm.routes
    if defaults.users:
        own_users = {u.username for u in vm.users}
        changes["users"] = [u for u in defaults.users if u.username not in own_users] + vm.users
    if defaults.filetrees:
        changes["filetrees"] = [replace(f) for f in defaults.filetrees] + vm.filetrees
    if defaults.extra:
        changes["extra"] = {**defaults.extra, **vm.extra}
    return replace(vm, **changes) if changes else vm


def effective_vms(scenario: Scenario) -> list[VM]:
    """Every VM of ``scenario`` with its ``<vm_defaults>`` applied, in document order."""
    d = scenario.global_.vm_defaults
    return [effective_vm(v, d) for v in scenario.vms]


def resolved(scenario: Scenario) -> Scenario:
    """A scenario whose VMs carry their defaults and that has no ``<vm_defaults>`` left: what
    a host agent, a splitter output or a CIM provider can read without knowing the rules."""
    if scenario.global_.vm_defaults is None:
        return scenario
    return replace(scenario, global_=replace(scenario.global_, vm_defaults=None),
                   vms=effective_vms(scenario))


def has_mgmt_if(vm: VM, mgmt_type: str, defaults: VmDefaults | None = None) -> bool:
    """Whether ``vm`` (with ``defaults``) gets a management interface, eth0.

    ``<mng_if>no</mng_if>`` says no. ediv gives every other VM one, as EDIV did whatever the
    scenario's ``vm_mgmt``; but where the scenario says ``vm_mgmt type="none"`` VNUML gave
    none, so a VM that uses ``<if id="0">`` itself is taken as an implicit ``mng_if`` no."""
    if (inherited(vm, defaults, "mng_if") or "").strip().lower() == "no":
        return False
    return not (mgmt_type == "none" and any(i.id == 0 for i in vm.interfaces))
