"""Build the scenario model from a parsed VNUML document.

The builder is tolerant: it runs on documents the XSD has rejected too, so that schema and
semantic problems can be reported together. It skips elements it does not know (the schema
reports them) and falls back to defaults for missing attributes. Its own diagnostics are the
values the model cannot hold: numbers that are not numbers (vm@order, if@id,
automac@offset, vm_mgmt@mask/@offset).

Conventions (VNUML files write them this way):
- an attribute that is empty or only blanks (``order=""``, ``external=""``, ``vlan=""``,
  ``sock=""``) means the attribute is absent;
- element text is stripped of surrounding blanks; an empty optional text element (``<mem/>``)
  means the element is absent;
- ``line`` of every model object is the source line of its element.
"""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from ediv.errors import Diagnostic
from ediv.scenario.checks import prefix_length
from ediv.scenario.model import (
    VM,
    Address,
    Console,
    Exec,
    Filesystem,
    Filetree,
    Global,
    HostIf,
    HostSection,
    Interface,
    Kernel,
    Net,
    PhysicalIf,
    Route,
    Scenario,
    User,
    VmDefaults,
    VmMgmt,
)

ROOTS = ("vnuml", "vnx")
NAME_TAGS = ("simulation_name", "scenario_name")
CANONICAL_NAME_TAG = {"vnuml": "simulation_name", "vnx": "scenario_name"}
NET_MODELLED_ATTRS = ("name", "mode", "type", "external", "vlan", "sock", "hub")
VM_EXTRA_TAGS = ("dynamips_conf", "conf", "display_console", "on_boot")
VM_DEFAULTS_EXTRA_TAGS = ("display_console",)
GLOBAL_EXTRA_TAGS = ("dynamips_ext", "olive_ext")


def language_problem(root: etree._Element, source: str) -> Diagnostic | None:
    """Why this document is not a scenario ediv reads (wrong root, VNX 2.0), or None."""
    if root.tag not in ROOTS:
        return Diagnostic(
            source,
            root.sourceline or 0,
            f"<{root.tag}> is not a VNUML scenario (expected root <vnuml> or <vnx>)",
        )
    version = root.find("global/version")
    text = _text(version) if version is not None else ""
    if text.startswith("2"):
        return Diagnostic(
            source,
            version.sourceline or 0,
            f"VNX 2.0 scenarios are not supported (version {text}); "
            "ediv reads VNUML 1.8/1.9x",
        )
    return None


def build(
    tree: etree._ElementTree | etree._Element, source: str = "<scenario>", basedir: str = "."
) -> tuple[Scenario, list[Diagnostic]]:
    """The model of ``tree`` plus the problems met while building it."""
    root = tree.getroot() if isinstance(tree, etree._ElementTree) else tree
    b = _Builder(source)
    scenario = Scenario(root=root.tag if root.tag in ROOTS else "vnuml", source=source,
                        basedir=basedir)
    for child in _elements(root):
        tag = child.tag
        if tag == "global":
            scenario.global_ = b.global_(child)
        elif tag == "net":
            scenario.nets.append(b.net(child))
        elif tag == "vm":
            scenario.vms.append(b.vm(child))
        elif tag == "host":
            scenario.host = b.host(child)
    return scenario, b.diagnostics


# --- helpers -------------------------------------------------------------------------


def _elements(elem: etree._Element):
    """Child elements, skipping comments and processing instructions."""
    return (c for c in elem if isinstance(c.tag, str))


def _text(elem: etree._Element) -> str:
    return "".join(elem.itertext()).strip()


def _opt_text(elem: etree._Element) -> str | None:
    return _text(elem) or None


def _attr(elem: etree._Element, name: str) -> str | None:
    """Attribute value, stripped; None when absent or blank."""
    value = elem.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


class _Builder:
    def __init__(self, source: str):
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def error(self, elem: etree._Element, message: str) -> None:
        self.diagnostics.append(Diagnostic(self.source, elem.sourceline or 0, message))

    def integer(self, elem: etree._Element, attr: str, what: str, *, minimum: int | None = None
                ) -> int | None:
        raw = _attr(elem, attr)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            self.error(elem, f"{what}: {attr} {raw!r} is not an integer")
            return None
        if minimum is not None and value < minimum:
            self.error(elem, f"{what}: {attr} {raw!r} must be at least {minimum}")
            return None
        return value

    # --- global ----------------------------------------------------------------------

    def global_(self, elem: etree._Element) -> Global:
        g = Global(line=elem.sourceline or 0)
        for child in _elements(elem):
            tag = child.tag
            if tag == "version":
                g.version = _text(child)
            elif tag in NAME_TAGS:
                g.simulation_name = _text(child)
            elif tag == "ssh_version":
                g.ssh_version = _opt_text(child)
            elif tag == "ssh_key":
                g.ssh_keys.append(_text(child))
            elif tag == "automac":
                offset = self.integer(child, "offset", "<automac>", minimum=0)
                g.automac = offset if offset is not None else 0
            elif tag == "netconfig":
                g.netconfig = {k: v for k in ("stp", "promisc") if (v := _attr(child, k))}
            elif tag == "vm_mgmt":
                g.vm_mgmt = self.vm_mgmt(child)
            elif tag == "tun_device":
                g.tun_device = _opt_text(child)
            elif tag == "vm_defaults":
                g.vm_defaults = self.vm_defaults(child)
            elif tag == "extension":
                g.extensions.append(
                    {k: v for k in ("plugin", "conf") if (v := child.get(k)) is not None}
                )
            elif tag in GLOBAL_EXTRA_TAGS:
                g.extra[tag] = _text(child)
        return g

    def vm_mgmt(self, elem: etree._Element) -> VmMgmt:
        m = VmMgmt(type=_attr(elem, "type") or "none", line=elem.sourceline or 0)
        m.network = _attr(elem, "network") or m.network
        mask = _attr(elem, "mask")
        if mask is not None:
            prefix = prefix_length(mask)
            if prefix is None:
                self.error(elem, f"<vm_mgmt>: mask {mask!r} is neither a prefix length "
                                 "(0-32) nor a dotted netmask")
            else:
                m.mask = prefix
        offset = self.integer(elem, "offset", "<vm_mgmt>", minimum=0)
        if offset is not None:
            m.offset = offset
        for child in _elements(elem):
            if child.tag == "host_mapping":
                m.host_mapping = True
            elif child.tag == "mgmt_net":
                m.mgmt_net = {k: v for k, v in child.attrib.items()}
        return m

    def vm_defaults(self, elem: etree._Element) -> VmDefaults:
        d = VmDefaults(exec_mode=_attr(elem, "exec_mode"), line=elem.sourceline or 0)
        for child in _elements(elem):
            tag = child.tag
            handler = _SHARED_CHILDREN.get(tag)
            if handler is not None:
                handler(self, d, child)
            elif tag in VM_DEFAULTS_EXTRA_TAGS:
                d.extra[tag] = _text(child)
        return d

    # --- net -------------------------------------------------------------------------

    def net(self, elem: etree._Element) -> Net:
        n = Net(
            name=_attr(elem, "name") or "",
            mode=_attr(elem, "mode") or "virtual_bridge",
            type=_attr(elem, "type") or "lan",
            external=_attr(elem, "external"),
            vlan=_attr(elem, "vlan"),
            sock=_attr(elem, "sock"),
            hub=_attr(elem, "hub"),
            line=elem.sourceline or 0,
        )
        for key in elem.attrib:
            if key not in NET_MODELLED_ATTRS and (value := _attr(elem, key)) is not None:
                n.extra[key] = value
        for child in _elements(elem):
            if child.tag == "bw":
                n.bw = _opt_text(child)
        return n

    # --- vm --------------------------------------------------------------------------

    def vm(self, elem: etree._Element) -> VM:
        name = _attr(elem, "name") or ""
        v = VM(
            name=name,
            order=self.integer(elem, "order", f"vm {name!r}"),
            type=_attr(elem, "type") or "",
            subtype=_attr(elem, "subtype"),
            os=_attr(elem, "os"),
            exec_mode=_attr(elem, "exec_mode"),
            appliance=_attr(elem, "appliance"),
            line=elem.sourceline or 0,
        )
        for child in _elements(elem):
            tag = child.tag
            handler = _SHARED_CHILDREN.get(tag)
            if handler is not None:
                handler(self, v, child)
            elif tag == "if":
                v.interfaces.append(self.interface(child, name))
            elif tag == "exec":
                v.execs.append(self.exec_(child))
            elif tag in VM_EXTRA_TAGS:
                v.extra[tag] = _text(child)
        return v

    def interface(self, elem: etree._Element, vm_name: str) -> Interface:
        if_id = self.integer(elem, "id", f"vm {vm_name!r} <if>")
        i = Interface(
            id=if_id if if_id is not None else 0,
            net=_attr(elem, "net") or "",
            name=_attr(elem, "name"),
            line=elem.sourceline or 0,
        )
        for child in _elements(elem):
            if child.tag == "mac":
                i.mac = _opt_text(child)
            elif child.tag in ("ipv4", "ipv6"):
                i.addresses.append(self.address(child))
        return i

    def address(self, elem: etree._Element) -> Address:
        return Address(
            family=4 if elem.tag == "ipv4" else 6,
            address=_text(elem),
            mask=_attr(elem, "mask"),
            line=elem.sourceline or 0,
        )

    # --- shared by vm, vm_defaults and host ------------------------------------------

    def route(self, elem: etree._Element) -> Route:
        return Route(
            type=_attr(elem, "type") or "ipv4",
            gw=_attr(elem, "gw") or "",
            destination=_text(elem),
            line=elem.sourceline or 0,
        )

    def exec_(self, elem: etree._Element) -> Exec:
        return Exec(
            command=_text(elem),
            seq=_attr(elem, "seq") or "",
            type=_attr(elem, "type") or "verbatim",
            mode=_attr(elem, "mode"),
            user=_attr(elem, "user"),
            gui=_attr(elem, "gui"),
            ostype=_attr(elem, "ostype"),
            line=elem.sourceline or 0,
        )

    def _filesystem(self, target, elem):
        target.filesystem = Filesystem(
            path=_text(elem), type=_attr(elem, "type") or "cow", line=elem.sourceline or 0
        )

    def _kernel(self, target, elem):
        target.kernel = Kernel(
            path=_text(elem),
            initrd=_attr(elem, "initrd"),
            devfs=_attr(elem, "devfs"),
            root=_attr(elem, "root"),
            modules=_attr(elem, "modules"),
            trace=_attr(elem, "trace"),
            line=elem.sourceline or 0,
        )

    def _console(self, target, elem):
        attrs = {k: v.strip() for k, v in elem.attrib.items() if k != "id" and v.strip()}
        target.consoles.append(
            Console(id=_attr(elem, "id") or "", value=_text(elem), attrs=attrs,
                    line=elem.sourceline or 0)
        )

    def _route(self, target, elem):
        target.routes.append(self.route(elem))

    def _forwarding(self, target, elem):
        target.forwarding = _attr(elem, "type") or "ip"

    def _user(self, target, elem):
        u = User(username=_attr(elem, "username") or "", group=_attr(elem, "group"),
                 line=elem.sourceline or 0)
        for child in _elements(elem):
            if child.tag == "group":
                u.groups.append(_text(child))
            elif child.tag == "ssh_key":
                u.ssh_keys.append(_text(child))
        target.users.append(u)

    def _filetree(self, target, elem):
        target.filetrees.append(
            Filetree(source=_text(elem), root=_attr(elem, "root") or "",
                     seq=_attr(elem, "seq") or "", user=_attr(elem, "user"),
                     line=elem.sourceline or 0)
        )

    @staticmethod
    def _scalar(attr: str) -> Callable:
        def set_text(self, target, elem):
            setattr(target, attr, _opt_text(elem))
        return set_text

    # --- host ------------------------------------------------------------------------

    def host(self, elem: etree._Element) -> HostSection:
        h = HostSection(line=elem.sourceline or 0)
        for child in _elements(elem):
            tag = child.tag
            if tag == "hostif":
                hif = HostIf(net=_attr(child, "net") or "", line=child.sourceline or 0)
                hif.addresses = [self.address(a) for a in _elements(child)
                                 if a.tag in ("ipv4", "ipv6")]
                h.hostifs.append(hif)
            elif tag == "physicalif":
                h.physicalifs.append(PhysicalIf(
                    name=_attr(child, "name") or "",
                    ip=_attr(child, "ip") or "",
                    type=_attr(child, "type") or "ipv4",
                    mask=_attr(child, "mask"),
                    gw=_attr(child, "gw"),
                    line=child.sourceline or 0,
                ))
            elif tag == "route":
                h.routes.append(self.route(child))
            elif tag == "forwarding":
                h.forwarding = _attr(child, "type") or "ip"
            elif tag == "exec":
                h.execs.append(self.exec_(child))
        return h


# Children that <vm> and <vm_defaults> share, and how each sets the target's field.
_SHARED_CHILDREN: dict[str, Callable] = {
    "filesystem": _Builder._filesystem,
    "kernel": _Builder._kernel,
    "console": _Builder._console,
    "route": _Builder._route,
    "forwarding": _Builder._forwarding,
    "user": _Builder._user,
    "filetree": _Builder._filetree,
    **{tag: _Builder._scalar(tag) for tag in ("mem", "shell", "basedir", "mng_if", "xterm")},
}
