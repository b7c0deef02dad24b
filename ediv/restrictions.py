"""EDIV deployment restriction files: read them and turn them into fixed placements.

A restriction file, as EDIV wrote it::

    <deployment_restrictions>
      <net_deploy_at net="AS1-AS4" host="kofy.dit.upm.es" />
      <vm_deploy_at vm="R2" host="zermat.dit.upm.es" />
      <antiaffinity><vm>R6</vm><vm>R1</vm></antiaffinity>
      <affinity><vm>R3</vm><vm>R2</vm></affinity>
      <net_deploy_together><net>A</net><net>B</net></net_deploy_together>
      <net_deploy_together net="C" />
    </deployment_restrictions>

(``net_deploy_together`` as EDIV 0.9.4 wrote it, with a ``net=`` attribute, or as vnx-ediv
did, with ``<net>`` children.)

``resolve`` applies the rules in EDIV's order (net_deploy_at, vm_deploy_at, affinity,
net_deploy_together, antiaffinity) and returns the VMs they place; the partition algorithm
places the rest. Host names: EDIV files often name hosts by FQDN while cluster.conf uses
short names, so a rule's host matches a cluster host with exactly that name first, else
the one cluster host whose first DNS label is the same (case-insensitive):
``zermat.dit.upm.es`` matches ``zermat`` and ``zermat`` matches ``zermat.example.org``;
two candidates are an error.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from ediv.cluster import Host
from ediv.errors import Diagnostic, InputError, PlanError
from ediv.partition.common import host_limit
from ediv.scenario.model import Scenario
from ediv.xmlsafe import parse_bytes

ROOT = "deployment_restrictions"
MAX_LISTED = 6


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return "{" + shown + (f", ... ({len(items)} in all)" if len(items) > MAX_LISTED else "") + "}"


@dataclass(frozen=True)
class Rule:
    source: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source

    def describe(self) -> str:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{self.where} ({self.describe()})"


@dataclass(frozen=True)
class NetDeployAt(Rule):
    """Every VM with an interface on ``net`` runs on ``host``."""

    net: str = ""
    host: str = ""

    def describe(self) -> str:
        return f"net_deploy_at net={self.net} host={self.host}"


@dataclass(frozen=True)
class VmDeployAt(Rule):
    vm: str = ""
    host: str = ""

    def describe(self) -> str:
        return f"vm_deploy_at vm={self.vm} host={self.host}"


@dataclass(frozen=True)
class Affinity(Rule):
    """These VMs run on one host."""

    vms: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"affinity {_names(self.vms)}"


@dataclass(frozen=True)
class NetDeployTogether(Rule):
    """All VMs on these nets run on one host (so none of the nets becomes a segment)."""

    nets: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"net_deploy_together {_names(self.nets)}"


@dataclass(frozen=True)
class AntiAffinity(Rule):
    """These VMs run on pairwise different hosts."""

    vms: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"antiaffinity {_names(self.vms)}"


@dataclass
class Restrictions:
    source: str = "<restrictions>"
    net_deploy_at: list[NetDeployAt] = field(default_factory=list)
    vm_deploy_at: list[VmDeployAt] = field(default_factory=list)
    affinity: list[Affinity] = field(default_factory=list)
    net_deploy_together: list[NetDeployTogether] = field(default_factory=list)
    antiaffinity: list[AntiAffinity] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)

    def rules(self) -> list[Rule]:
        """All rules in processing order (by kind, then file order)."""
        return [
            *self.net_deploy_at,
            *self.vm_deploy_at,
            *self.affinity,
            *self.net_deploy_together,
            *self.antiaffinity,
        ]


# --- reading -------------------------------------------------------------------------------


def load_restrictions(path: str | Path) -> Restrictions:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(Diagnostic(str(path), 0, f"cannot read: {exc.strerror}")) from None
    return parse_restrictions(data, str(path))


def parse_restrictions(data: bytes, source: str = "<restrictions>") -> Restrictions:
    """Parse a ``<deployment_restrictions>`` document; every problem at once as InputError."""
    root = parse_bytes(data, source).getroot()
    result = Restrictions(source=source)
    errors: list[Diagnostic] = []

    def err(el: etree._Element, message: str) -> None:
        errors.append(Diagnostic(source, el.sourceline or 0, message))

    if etree.QName(root).localname != ROOT:
        err(root, f"expected <{ROOT}> as the root element, got <{etree.QName(root).localname}>")
        raise InputError(errors)
    for el in root:
        if not isinstance(el.tag, str):
            continue  # comments, processing instructions
        tag = etree.QName(el).localname
        line = el.sourceline or 0
        if tag in ("net_deploy_at", "vm_deploy_at"):
            what = "net" if tag == "net_deploy_at" else "vm"
            values = _attributes(el, (what, "host"), err, result.warnings, source)
            if _element_children(el):
                err(el, f"<{tag}> takes no child elements")
            if values is None:
                continue
            if tag == "net_deploy_at":
                result.net_deploy_at.append(NetDeployAt(source, line, *values))
            else:
                result.vm_deploy_at.append(VmDeployAt(source, line, *values))
        elif tag in ("affinity", "antiaffinity", "net_deploy_together"):
            child = "net" if tag == "net_deploy_together" else "vm"
            members = _members(el, child, err, result.warnings, source)
            if members is not None and tag == "net_deploy_together":
                members = _with_net_attribute(el, members, err, result.warnings, source)
            minimum = 1 if tag == "net_deploy_together" else 2
            if members is None:
                continue
            if len(members) < minimum:
                err(el, f"<{tag}> needs at least {minimum} different <{child}> element(s)")
                continue
            if tag == "affinity":
                result.affinity.append(Affinity(source, line, members))
            elif tag == "antiaffinity":
                result.antiaffinity.append(AntiAffinity(source, line, members))
            else:
                result.net_deploy_together.append(NetDeployTogether(source, line, members))
        else:
            err(
                el,
                f"unknown restriction <{tag}> (expected net_deploy_at, vm_deploy_at, affinity, "
                "net_deploy_together or antiaffinity)",
            )
    if errors:
        raise InputError(errors)
    return result


def _with_net_attribute(el, members, err, warnings, source) -> tuple[str, ...] | None:
    """EDIV 0.9.4 (static.pm) wrote ``<net_deploy_together net="X"/>``; the later vnx-ediv
    form lists ``<net>`` children. Both are read, and may be mixed."""
    for extra in sorted(set(el.attrib) - {"net"}):
        warnings.append(Diagnostic(source, el.sourceline or 0,
                                   f"<net_deploy_together>: attribute {extra}= ignored", "warning"))
    if "net" not in el.attrib:
        return members
    name = el.get("net", "").strip()
    if not name:
        err(el, "<net_deploy_together> needs a non-empty net= attribute")
        return None
    if name in members:
        warnings.append(Diagnostic(source, el.sourceline or 0,
                                   f"{name} listed twice in <net_deploy_together>", "warning"))
        return members
    return (name, *members)


def _element_children(el: etree._Element) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str)]


def _attributes(el, names, err, warnings, source) -> tuple[str, ...] | None:
    tag = etree.QName(el).localname
    values = []
    for name in names:
        value = (el.get(name) or "").strip()
        if not value:
            err(el, f"<{tag}> needs a non-empty {name}= attribute")
            return None
        values.append(value)
    for extra in sorted(set(el.attrib) - set(names)):
        warnings.append(
            Diagnostic(source, el.sourceline or 0, f"<{tag}>: attribute {extra}= ignored",
                       "warning")
        )
    return tuple(values)


def _members(el, child, err, warnings, source) -> tuple[str, ...] | None:
    tag = etree.QName(el).localname
    members: list[str] = []
    ok = True
    for c in _element_children(el):
        if etree.QName(c).localname != child:
            err(c, f"<{tag}> may only contain <{child}> elements, got <{etree.QName(c).localname}>")
            ok = False
            continue
        name = (c.text or "").strip()
        if not name:
            err(c, f"empty <{child}> in <{tag}>")
            ok = False
        elif name in members:
            warnings.append(
                Diagnostic(source, c.sourceline or 0, f"{name} listed twice in <{tag}>", "warning")
            )
        else:
            members.append(name)
    return tuple(members) if ok else None


# --- resolving -----------------------------------------------------------------------------


def match_host(name: str, hosts: Sequence[Host]) -> list[int]:
    """Indexes of the cluster hosts ``name`` can mean (see the module docstring)."""
    exact = [i for i, h in enumerate(hosts) if h.name == name]
    if exact:
        return exact
    label = name.split(".", 1)[0].lower()
    return [i for i, h in enumerate(hosts) if h.name.split(".", 1)[0].lower() == label]


def resolve(
    restrictions: Restrictions, scenario: Scenario, hosts: Sequence[Host]
) -> dict[str, str]:
    """VM -> host for every VM the restrictions place, in VM order.

    Unknown VM, net or host names raise InputError (all at once); rules that cannot all
    hold raise PlanError naming each pair of rules in conflict with their file:line."""
    return _Resolver(restrictions, scenario, hosts).run()


class _Resolver:
    def __init__(self, restrictions: Restrictions, scenario: Scenario, hosts: Sequence[Host]):
        self.r = restrictions
        self.hosts = list(hosts)
        self.limits = [host_limit(h) for h in self.hosts]
        self.counts = [0] * len(self.hosts)
        self.vm_order = [v.name for v in scenario.ordered_vms()]
        self.rank = {name: i for i, name in enumerate(self.vm_order)}
        self.net_vms: dict[str, list[str]] = {n.name: [] for n in scenario.nets}
        for vm in scenario.ordered_vms():
            for net in vm.nets:
                self.net_vms.setdefault(net, []).append(vm.name)
        self.placed: dict[str, int] = {}
        self.why: dict[str, Rule] = {}
        self.conflicts: dict[tuple, list[str]] = {}  # key -> messages, insertion ordered
        self.host_of: dict[Rule, int] = {}

    # -- bookkeeping

    def conflict(self, key: tuple, message: str) -> None:
        self.conflicts.setdefault(key, []).append(message)

    def put(self, vm: str, h: int, rule: Rule) -> None:
        self.placed[vm] = h
        self.why[vm] = rule
        self.counts[h] += 1

    def hname(self, h: int) -> str:
        return self.hosts[h].name

    # -- steps

    def run(self) -> dict[str, str]:
        self.check_names()
        for rule in self.r.net_deploy_at:
            for vm in self.net_vms.get(rule.net, []):
                self.fix(vm, rule, f"{vm} is on net {rule.net}")
        for rule in self.r.vm_deploy_at:
            self.fix(rule.vm, rule, "")
        self.check_fixed_limits()
        self.place_affinity_groups()
        self.place_antiaffinity()
        if self.conflicts:
            lines = []
            for messages in self.conflicts.values():
                more = len(messages) - 1
                lines.append(messages[0] + (f" (and {more} more like it)" if more else ""))
            raise PlanError("restrictions cannot all hold:\n  " + "\n  ".join(lines))
        return {vm: self.hname(self.placed[vm]) for vm in self.vm_order if vm in self.placed}

    def check_names(self) -> None:
        errors: list[Diagnostic] = []

        def unknown(rule: Rule, what: str, name: str) -> None:
            errors.append(
                Diagnostic(rule.source, rule.line, f"{rule.describe()}: unknown {what} {name!r}")
            )

        for rule in self.r.rules():
            if isinstance(rule, NetDeployAt | VmDeployAt):
                matches = match_host(rule.host, self.hosts)
                if len(matches) == 1:
                    self.host_of[rule] = matches[0]
                elif not matches:
                    known = ", ".join(h.name for h in self.hosts)
                    errors.append(
                        Diagnostic(
                            rule.source,
                            rule.line,
                            f"{rule.describe()}: unknown host {rule.host!r} "
                            f"(cluster hosts: {known})",
                        )
                    )
                else:
                    both = ", ".join(self.hname(i) for i in matches)
                    errors.append(
                        Diagnostic(
                            rule.source,
                            rule.line,
                            f"{rule.describe()}: host {rule.host!r} is ambiguous ({both})",
                        )
                    )
            if isinstance(rule, NetDeployAt) and rule.net not in self.net_vms:
                unknown(rule, "net", rule.net)
            if isinstance(rule, VmDeployAt) and rule.vm not in self.rank:
                unknown(rule, "VM", rule.vm)
            if isinstance(rule, Affinity | AntiAffinity):
                for vm in rule.vms:
                    if vm not in self.rank:
                        unknown(rule, "VM", vm)
            if isinstance(rule, NetDeployTogether):
                for net in rule.nets:
                    if net not in self.net_vms:
                        unknown(rule, "net", net)
        if errors:
            raise InputError(errors)

    def fix(self, vm: str, rule: NetDeployAt | VmDeployAt, reason: str) -> None:
        h = self.host_of[rule]
        if vm not in self.placed:
            self.put(vm, h, rule)
            return
        if self.placed[vm] != h:
            first = self.why[vm]
            self.conflict(
                (first, rule),
                f"{rule} conflicts with {first}: {vm} cannot run on both "
                f"{self.hname(self.placed[vm])} and {self.hname(h)}",
            )

    def check_fixed_limits(self) -> None:
        for h, count in enumerate(self.counts):
            if count > self.limits[h]:
                rules = list(dict.fromkeys(self.why[vm] for vm, i in self.placed.items() if i == h))
                self.conflict(
                    ("max_vhost", h),
                    f"{' and '.join(str(r) for r in rules[:MAX_LISTED])} put {count} VMs on "
                    f"{self.hname(h)}, whose max_vhost is {self.hosts[h].max_vhost}",
                )

    # -- affinity and net_deploy_together: union the groups, then place each component

    def group_rules(self) -> list[tuple[Rule, list[str]]]:
        groups: list[tuple[Rule, list[str]]] = [(r, list(r.vms)) for r in self.r.affinity]
        for rule in self.r.net_deploy_together:
            vms = list(dict.fromkeys(vm for net in rule.nets for vm in self.net_vms[net]))
            groups.append((rule, vms))
        return groups

    def place_affinity_groups(self) -> None:
        groups = self.group_rules()
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for _, vms in groups:
            for vm in vms[1:]:
                a, b = find(vms[0]), find(vm)
                if a != b:
                    first, second = sorted((a, b), key=self.rank.__getitem__)
                    parent[second] = first
        components: dict[str, tuple[list[Rule], list[str]]] = {}
        for rule, vms in groups:
            if not vms:
                continue
            comp = components.setdefault(find(vms[0]), ([], []))
            comp[0].append(rule)
        for vm in sorted(parent, key=self.rank.__getitem__):
            components[find(vm)][1].append(vm)
        self.component_of = {vm: root for root, (_, vms) in components.items() for vm in vms}
        bad = self.affinity_vs_antiaffinity(groups)
        for root, (rules, members) in components.items():
            if root not in bad:
                self.place_component(rules, members, groups)

    def path(self, a: str, b: str, groups: list[tuple[Rule, list[str]]]) -> list[Rule]:
        """The chain of group rules that ties VM ``a`` to VM ``b`` (breadth-first)."""
        by_vm: dict[str, list[int]] = {}
        comp = self.component_of[a]
        for gi, (_, vms) in enumerate(groups):
            if vms and self.component_of.get(vms[0]) == comp:
                for vm in vms:
                    by_vm.setdefault(vm, []).append(gi)
        came: dict[str, int | None] = {a: None}
        prev: dict[str, str] = {}
        queue = deque([a])
        while queue:
            vm = queue.popleft()
            if vm == b:
                break
            for gi in by_vm.get(vm, []):
                for other in groups[gi][1]:
                    if other not in came:
                        came[other] = gi
                        prev[other] = vm
                        queue.append(other)
        chain: list[Rule] = []
        vm = b
        while came.get(vm) is not None:
            chain.append(groups[came[vm]][0])
            vm = prev[vm]
        return list(dict.fromkeys(reversed(chain)))

    def affinity_vs_antiaffinity(self, groups) -> set[str]:
        """Components that an antiaffinity rule would split: report and skip them."""
        bad: set[str] = set()
        for rule in self.r.antiaffinity:
            seen: dict[str, str] = {}
            for vm in rule.vms:
                comp = self.component_of.get(vm)
                if comp is None:
                    continue
                if comp in seen:
                    chain = self.path(seen[comp], vm, groups)
                    self.conflict(
                        (rule, *chain),
                        f"{rule} conflicts with {' and '.join(str(r) for r in chain)}: "
                        f"{seen[comp]} and {vm} must share a host and must not",
                    )
                    bad.add(comp)
                else:
                    seen[comp] = vm
        return bad

    def partners(self, vm: str) -> list[tuple[AntiAffinity, str]]:
        if not hasattr(self, "_partners"):
            self._partners: dict[str, list[tuple[AntiAffinity, str]]] = {}
            for rule in self.r.antiaffinity:
                for a in rule.vms:
                    for b in rule.vms:
                        if a != b:
                            self._partners.setdefault(a, []).append((rule, b))
        return self._partners.get(vm, [])

    def blocked_hosts(self, members: Sequence[str]) -> dict[int, tuple[AntiAffinity, str, str]]:
        """Hosts that an antiaffinity partner (outside ``members``) already occupies."""
        inside = set(members)
        blocked: dict[int, tuple[AntiAffinity, str, str]] = {}
        for vm in members:
            for rule, other in self.partners(vm):
                if other not in inside and other in self.placed:
                    blocked.setdefault(self.placed[other], (rule, vm, other))
        return blocked

    def place_component(self, rules: list[Rule], members: list[str], groups) -> None:
        at = {vm: self.placed[vm] for vm in members if vm in self.placed}
        todo = [vm for vm in members if vm not in self.placed]
        targets = sorted(set(at.values()))
        if len(targets) > 1:
            a = next(vm for vm in members if vm in at)
            b = next(vm for vm in members if vm in at and at[vm] != at[a])
            chain = self.path(a, b, groups)
            first, second = self.why[a], self.why[b]
            fixed = " and ".join(str(r) for r in dict.fromkeys([first, second]))
            self.conflict(
                (*chain, first, second),
                f"{' and '.join(str(r) for r in chain)} conflicts with {fixed}: {a} and {b} "
                f"must share a host but are placed on {self.hname(at[a])} and {self.hname(at[b])}",
            )
            return
        if not todo:
            return
        blocked = self.blocked_hosts(members)
        if targets:
            h = targets[0]
            anchor = next(vm for vm in members if vm in at)
            chain = self.path(anchor, todo[0], groups) or rules[:1]
            label = " and ".join(str(r) for r in chain)
            if h in blocked:
                rule, vm, other = blocked[h]
                self.conflict(
                    (rule, *chain),
                    f"{label} conflicts with {rule}: {vm} must follow {anchor} "
                    f"({self.why[anchor]}) to {self.hname(h)}, where {other} runs",
                )
                return
            if self.counts[h] + len(todo) > self.limits[h]:
                self.conflict(
                    (*chain, self.why[anchor]),
                    f"{label} conflicts with {self.why[anchor]}: {len(todo)} more VM(s) must "
                    f"follow {anchor} to {self.hname(h)}, which has {self.counts[h]} of "
                    f"max_vhost {self.hosts[h].max_vhost}",
                )
                return
        else:
            fits = [
                i
                for i in range(len(self.hosts))
                if i not in blocked and self.counts[i] + len(todo) <= self.limits[i]
            ]
            if not fits:
                reasons = [f"{len(todo)} VMs must share a host"]
                reasons += [
                    f"{o} ({r.where}) is on {self.hname(i)}" for i, (r, _, o) in blocked.items()
                ]
                self.conflict(
                    tuple(rules),
                    f"{' and '.join(str(r) for r in rules[:MAX_LISTED])}: "
                    "no host can take the group "
                    f"({'; '.join(reasons)}; max_vhost: "
                    + ", ".join(f"{h.name} {h.max_vhost or 'unlimited'}" for h in self.hosts)
                    + ")",
                )
                return
            h = min(fits, key=lambda i: (self.counts[i], i))
        for vm in todo:
            self.put(vm, h, rules[0])

    # -- antiaffinity: placed members must differ; the others go to distinct free hosts

    def place_antiaffinity(self) -> None:
        n = len(self.hosts)
        for rule in self.r.antiaffinity:
            if len(rule.vms) > n:
                self.conflict(
                    (rule, "hosts"),
                    f"{rule} needs {len(rule.vms)} different hosts, the cluster has {n}",
                )
                continue
            holder: dict[int, str] = {}
            for vm in rule.vms:
                if vm not in self.placed:
                    continue
                h = self.placed[vm]
                if h in holder:
                    other = holder[h]
                    fixed = list(dict.fromkeys([self.why[other], self.why[vm]]))
                    self.conflict(
                        (rule, *fixed),
                        f"{rule} conflicts with {' and '.join(str(r) for r in fixed)}: "
                        f"{other} and {vm} are both placed on {self.hname(h)}",
                    )
                else:
                    holder[h] = vm
            for vm in rule.vms:
                if vm in self.placed:
                    continue
                blocked = self.blocked_hosts([vm])
                free = [i for i in range(n) if i not in blocked and self.counts[i] < self.limits[i]]
                if not free:
                    self.conflict(
                        (rule, "room", vm),
                        f"{rule}: no host is left for {vm} (hosts holding its antiaffinity "
                        f"partners: {', '.join(self.hname(i) for i in sorted(blocked))}; the "
                        "others are at max_vhost)",
                    )
                    continue
                self.put(vm, min(free, key=lambda i: (self.counts[i], i)), rule)
