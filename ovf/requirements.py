"""What a package asks for that ediv cannot honour: one line per reason to refuse it.

DSP0243 lets a consumer skip an optional section, but a required one it cannot apply means
the package must not be deployed (5.5, 9.1). The descriptor-only checks live here; the ones
that need the package's files (a boot disk that is missing or a URL) are in
``ediv.ovf.importer``. Each line names the section (or id) so that a refusal says what to
change.
"""

from __future__ import annotations

from collections import Counter

from . import envelope as m

# CIM_ResourceAllocationSettingData.ResourceType values DMTF defines (1 Other ... 35);
# 0, DMTF-reserved and vendor-reserved (0x8000-0xFFFF) values are "unknown" here.
KNOWN_RESOURCE_TYPES = frozenset(range(1, 36))


def descriptor_refusals(env: m.Envelope) -> list[str]:
    """Reasons, from the descriptor alone, not to deploy ``env`` under its configuration."""
    out: list[str] = []
    for ext in _all_extensions(env):
        kind = ext.name.rsplit(":", 1)[-1]
        if kind == "EncryptionSection":
            out.append(f"{ext.name} (line {ext.line}): the package has encrypted files and "
                       "ediv cannot decrypt them")
        elif kind == "EnvironmentFilesSection" and ext.required:
            out.append(f"{ext.name} (line {ext.line}) is required: ediv cannot attach extra "
                       "environment files to the transport")
    for what, ids in (("File", [f.id for f in env.files]),
                      ("Disk", [d.disk_id for d in env.disks])):
        dup = [i for i, n in Counter(ids).items() if n > 1]
        if dup:
            out.append(f"References/DiskSection: duplicate {what} id(s) "
                       f"{', '.join(repr(d) for d in dup)} (a reference would be ambiguous)")
    configuration = env.default_configuration()
    for vs in env.systems():
        for item in vs.items(configuration):
            rtype = item.resource_type
            if (item.required and rtype is not None and rtype not in KNOWN_RESOURCE_TYPES
                    and env.dialect != "ovirt"):  # engine devices (RNG 0, video 32768)
                out.append(f"VirtualHardwareSection of {vs.id!r} (line {item.line}): required "
                           f"{item.kind} {item.element_name or item.instance_id or '?'} has "
                           f"ResourceType {rtype}, unknown to ediv (mark it "
                           "ovf:required=\"false\" to deploy without it)")
    return out


def eulas(env: m.Envelope) -> list[str]:
    """License texts of the whole tree, in document order, without repeats."""
    texts: list[str] = []
    stack: list = [env.content] if env.content is not None else []
    while stack:
        node = stack.pop(0)
        texts.extend(t for t in node.eulas if t)
        if isinstance(node, m.VirtualSystemCollection):
            stack[0:0] = node.members
    return list(dict.fromkeys(texts))


def startup_orders(env: m.Envelope) -> dict[int, int]:
    """``id(VirtualSystem)`` -> VNUML ``order`` (1, 2, ...) from the StartupSections.

    A system's key is the chain of ovf:order values from the outermost collection that
    orders it down to its own entry; systems are ranked by key, equal keys share a rank.
    Systems no StartupSection names get no order (VNUML starts them after the others)."""
    keys: dict[int, tuple[int, ...]] = {}

    def walk(node, prefix: tuple[int, ...]) -> None:
        if isinstance(node, m.VirtualSystem):
            if prefix:
                keys[id(node)] = prefix
            return
        if isinstance(node, m.VirtualSystemCollection):
            order_of = {e.id: e.order for e in node.startup}
            for member in node.members:
                own = order_of.get(member.id or "")
                walk(member, (*prefix, own) if own is not None else prefix)

    walk(env.content, ())
    ranks = {k: n for n, k in enumerate(sorted(set(keys.values())), start=1)}
    return {ident: ranks[key] for ident, key in keys.items()}


def _all_extensions(env: m.Envelope) -> list[m.Extension]:
    found = list(env.extensions)
    stack: list = [env.content] if env.content is not None else []
    while stack:
        node = stack.pop(0)
        found.extend(node.extensions)
        if isinstance(node, m.VirtualSystemCollection):
            stack[0:0] = node.members
    return found
