"""``ediv ovf ...``: OVF/OVA commands: inspect, convert, import, export."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ediv.client.wbem_mode import (
    NS,
    finished,
    get_scenario,
    run_wbem,
    scenario_path,
    service_path,
    state_of,
    wbem_options,
)
from ediv.errors import EdivError, InputError
from ediv.ovf.inspect import Inspection, inspect_package

if TYPE_CHECKING:
    from ediv.ovf.importer import Appliance
    from ediv.scenario.model import Scenario

EXIT_VERIFY_FAILED = 2


@dataclass
class DeployChoices:
    """What the user chose for a deployment: the deployment option, property values, and
    whether the package's EULAs are accepted (``--deployment-option``, ``--prop``,
    ``--props``, ``--accept-eula``)."""

    configuration: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    accept_eula: bool = False

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``open_appliance`` / ``import_into_scenario``."""
        return {"configuration": self.configuration, "properties": self.properties,
                "accept_eula": self.accept_eula,
                "defer_disks": True}  # the commands convert what they open: read it once


def deploy_options(*, eula: bool = True) -> Callable:
    """Adds --deployment-option, --prop, --props (and --accept-eula) to a command, passed to
    it as one ``deploy: DeployChoices`` argument."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, deployment_option=None, props=(), props_file=None,
                    accept_eula=False, **kwargs):
            from ediv.ovf.properties import parse_assignments

            choices = DeployChoices(deployment_option, parse_assignments(props, props_file),
                                    accept_eula)
            return fn(*args, deploy=choices, **kwargs)

        options = [
            click.option("--deployment-option", metavar="NAME",
                         help="Deployment option (DeploymentOptionSection Configuration id) "
                              "to use; default: the package's default one."),
            click.option("--prop", "props", multiple=True, metavar="KEY=VALUE",
                         help="Value of a userConfigurable ProductSection property (checked "
                              "against its type and qualifiers); repeatable."),
            click.option("--props", "props_file", type=click.Path(exists=True,
                                                                  dir_okay=False),
                         help="File of property values: KEY=VALUE lines or a JSON object "
                              "(--prop options win)."),
        ]
        if eula:
            options.append(click.option("--accept-eula", is_flag=True,
                                        help="Accept the package's license agreements "
                                             "(EulaSection); without it a package with a "
                                             "EULA is refused and its text printed."))
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return deco


@contextmanager
def showing_eulas() -> Iterator[None]:
    """Print the license texts of a package refused for want of --accept-eula."""
    from ediv.ovf.importer import EulaNotAccepted

    try:
        yield
    except EulaNotAccepted as exc:
        for n, text in enumerate(exc.texts, start=1):
            click.echo(f"--- license agreement {n} of {len(exc.texts)} ---", err=True)
            click.echo(text, err=True)
        click.echo("--- end of license agreements ---", err=True)
        raise


def package_policy(fn):
    """``--require-signature`` and ``--limit KEY=VALUE``: the trust policy (ovf.policy) and
    the sanity caps (ovf.limits) of this run, the same as scenarios read from the
    environment."""
    from ediv.ovf import limits, policy

    @functools.wraps(fn)
    def wrapper(*args, require_signature: bool, limit_settings: tuple[str, ...], **kwargs):
        current = policy.TrustPolicy.from_env()
        policy.use(policy.TrustPolicy(require_signature=require_signature or
                                      current.require_signature,
                                      trust=kwargs.get("trust") or current.trust))
        limits.use(limits.active().with_settings(",".join(limit_settings)))
        try:
            return fn(*args, **kwargs)
        finally:
            policy.use(None)
            limits.use(None)

    wrapper = click.option(
        "--limit", "limit_settings", multiple=True, metavar="KEY=VALUE",
        help="Raise or lower a sanity cap (disk_bytes, expanded_bytes, ratio, memory_mb, "
             "cpus, nics, items, systems, files, disks, members, descriptor_bytes; sizes "
             "take K/M/G/T; see docs/ovf.md). Default from $EDIV_OVF_LIMITS.")(wrapper)
    return click.option(
        "--require-signature", is_flag=True, envvar="EDIV_OVF_REQUIRE_SIGNATURE",
        help="Refuse packages that are not signed or whose signer is not trusted (default: "
             "a warning, and the package is used).")(wrapper)


@click.group("ovf")
def ovf_group() -> None:
    """Read, verify and convert OVF descriptors and OVA packages."""


@ovf_group.command("inspect")
@package_policy
@click.argument("package", type=click.Path(exists=True, dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print the inspection as JSON.")
@click.option("--trust", type=click.Path(exists=True), envvar="EDIV_OVF_TRUST",
              help="CA certificates (PEM bundle or folder) trusted to sign packages; "
                   "default: $EDIV_OVF_TRUST, else the system CA bundle.")
@click.option("--schema-dir", type=click.Path(exists=True, file_okay=False),
              help="Folder with the DMTF DSP8023 schemas: validate the descriptor (advisory).")
@deploy_options(eula=False)
def inspect_cmd(package: str, as_json: bool, trust: str | None, schema_dir: str | None,
                deploy: DeployChoices) -> None:
    """Summarise PACKAGE (OVA, .ovf or package folder) and verify its manifest and signature.

    The summary is of the deployment option --deployment-option names (default: the
    package's); --prop values are checked as convert and import would. Password
    properties are masked.

    Exit status: 0 when the trust policy accepts the package (an untrusted or absent
    signature is a warning unless --require-signature), 2 when it refuses it (manifest
    mismatch; signature invalid, expired or not yet valid; untrusted or absent under
    --require-signature), 1 when the package cannot be read or is beyond a --limit.
    """
    result = inspect_package(package, trust=trust, schema_dir=schema_dir,
                             configuration=deploy.configuration,
                             properties=deploy.properties)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(render_text(result))
    if result.failed:
        if as_json:
            click.echo(f"ediv: verification failed: {failure_reason(result)}", err=True)
        sys.exit(EXIT_VERIFY_FAILED)


def failure_reason(result: Inspection) -> str:
    return "; ".join(result.failures())


def render_text(result: Inspection) -> str:
    data = result.to_json()
    lines = [f"{result.source} ({result.package_kind}, descriptor {result.descriptor})",
             f"OVF {data['ovf_version']}"
             + (f" (declares {data['declared_version']})" if data["declared_version"] else "")
             + (f", dialect {data['dialect']}" if data["dialect"] else "")]
    if data["configuration"]:
        lines.append(f"deployment option: {data['configuration']} "
                     f"(of {', '.join(data['deployment_options'])})")
        for o in data["options"]:
            lines.append(f"  {o['id']}{' (default)' if o['default'] else ''}"
                         + (f": {o['label']}" if o["label"] else ""))
    lines.append(f"networks: {', '.join(data['networks']) or '-'}")
    for s in data["systems"]:
        lines.append(f"system {s['id']} ({s['name']}): {_or_dash(s['cpus'])} CPU, "
                     f"{_or_dash(s['memory_mb'])} MB")
        for nic in s["nics"]:
            lines.append(f"  nic -> {_or_dash(nic['network'])}")
        for d in s["disks"]:
            size = f"{d['capacity_bytes'] / 2**30:.2f} GiB" if d["capacity_bytes"] else "?"
            lines.append(f"  disk {_or_dash(d['file'])} {size} {_or_dash(d['format'])}")
    if data["properties"]:
        lines.append(f"properties: {len(data['properties'])}")
        for p, detail in zip(data["properties"], data["property_details"], strict=True):
            lines.append(f"  {p['key']} = {p['value'] if p['value'] is not None else ''}"
                         + (" (user-configurable)" if detail["user_configurable"] else ""))
    for n, text in enumerate(data["eulas"], start=1):
        lines.append(f"license agreement {n} (accept with --accept-eula):")
        lines.extend(f"  {line}" for line in text.splitlines())
    if data["refusals"]:
        lines.append("ediv cannot deploy it:")
        lines.extend(f"  {r}" for r in data["refusals"])
    lines.append(f"manifest: {result.manifest.status}")
    lines.extend(f"  {d}" for d in result.manifest.details)
    lines.append(f"signature: {result.signature.status}")
    lines.extend(f"  {d}" for d in result.signature.details)
    decision = result.decision
    lines.append(f"policy: {decision.decision} (signature "
                 f"{'required' if decision.require_signature else 'not required'})")
    if result.schema is not None:
        lines.append(f"schema: {result.schema.status}")
    if data["warnings"]:
        lines.append("warnings:")
        lines.extend(f"  {w}" for w in data["warnings"])
    if result.failed:
        lines.append(f"VERIFICATION FAILED: {failure_reason(result)}")
    return "\n".join(lines)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def parse_net_map(values: tuple[str, ...]) -> dict[str, str]:
    """``--net OVFNET=NET`` options as a dict (the OVF network name may contain blanks)."""
    out: dict[str, str] = {}
    for item in values:
        ovf_net, sep, net = item.rpartition("=")
        if not sep or not ovf_net or not net.strip():
            raise click.BadParameter(f"{item!r}: expected OVFNET=NET", param_hint="--net")
        out[ovf_net] = net.strip()
    return out


net_option = click.option("--net", "nets", multiple=True, metavar="OVFNET=NET",
                          help="Connect the package's network OVFNET to the scenario net NET "
                               "(default: the same name).")
type_option = click.option("--type", "--vm-type", "vm_type",
                           type=click.Choice(["uml", "container"]),
                           help="VM type (default: uml for systems with a disk, else "
                                "container).")
trust_option = click.option("--trust", type=click.Path(exists=True), envvar="EDIV_OVF_TRUST",
                            help="CA certificates (PEM bundle or folder) trusted to sign "
                                 "packages; default: $EDIV_OVF_TRUST, else the system CA "
                                 "bundle.")


def _warn(lines: list[str]) -> None:
    for line in dict.fromkeys(lines):
        click.echo(f"warning: {line}", err=True)


@ovf_group.command("convert")
@package_policy
@click.argument("package", type=click.Path(exists=True, dir_okay=True))
@net_option
@type_option
@trust_option
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="VNUML file to write; disks and ovf-env.xml go beside it "
                   "(default: the XML on stdout, the files in the current folder).")
@click.option("--vms-only", is_flag=True, help="Write only the <vm> elements, not a scenario.")
@click.option("--name", help="Scenario name (default: the package's name).")
@deploy_options()
def convert_cmd(package: str, nets: tuple[str, ...], vm_type: str | None, trust: str | None,
                output: str | None, vms_only: bool, name: str | None,
                deploy: DeployChoices) -> None:
    """Translate PACKAGE to VNUML: its systems become <vm>s, its disks raw images.

    The package is verified first (manifest, signature); a failure writes nothing.
    """
    from lxml import etree

    from ediv import xmlsafe
    from ediv.ovf.importer import materialize, open_appliance
    from ediv.ovf.translate import to_scenario
    from ediv.scenario import to_xml

    with showing_eulas():
        appliance = open_appliance(package, net_map=parse_net_map(nets), vm_type=vm_type,
                                   trust=trust, **deploy.kwargs())
    out_dir = Path(output).resolve().parent if output else Path.cwd()
    if output and Path(output).exists() and Path(output).is_dir():
        raise InputError("-o must name a file", output)
    materialize(appliance, out_dir)
    _warn(appliance.warnings)
    scenario = to_scenario(appliance.vms, name or Path(package).stem,
                           envelope=appliance.envelope)
    if vms_only:
        root = xmlsafe.parse_bytes(to_xml(scenario)).getroot()
        text = b"".join(etree.tostring(vm, encoding="UTF-8") for vm in root.iter("vm"))
    else:
        text = to_xml(scenario)
    if output:
        Path(output).write_bytes(text)
        click.echo(f"{output}: {len(appliance.vms)} VMs ("
                   + ", ".join(vm.name for vm in appliance.vms) + ")", err=True)
    else:
        click.echo(text.decode())
    for path in appliance.files:
        click.echo(f"wrote {path}", err=True)


@ovf_group.command("import")
@deploy_options()
@package_policy
@wbem_options
@click.argument("package", type=click.Path(exists=True, dir_okay=True))
@click.option("--scenario", required=True, metavar="FILE|NAME",
              help="Without --server: the scenario FILE to add the VMs to (written back; the "
                   "old one kept as .bak). With --server: the NAME of a scenario defined "
                   "(not deployed) on the server.")
@net_option
@type_option
@trust_option
@click.option("--image-dir", type=click.Path(file_okay=False),
              help="With --server: convert the disk images into this folder, which the "
                   "server's hosts see at the same path (shared storage), instead of "
                   "uploading them to the server's image store (the default).")
def import_cmd(package: str, scenario: str, nets: tuple[str, ...], vm_type: str | None,
               trust: str | None, image_dir: str | None, deploy: DeployChoices,
               target=None) -> None:
    """Add the VMs of PACKAGE to a scenario, after verifying the package (manifest,
    signature); a package that fails verification imports nothing.

    \b
    Without --server, --scenario is a scenario FILE: the VMs and the nets they need are
    added to it, the previous version kept as FILE.bak, disks converted beside it.

    \b
    With --server URL, --scenario is the NAME of a scenario defined on the server (not
    deployed): each VM is added with DefineSystem. The VMs' nets must be nets of that
    scenario (map them with --net OVFNET=NET). Disk images are converted here and uploaded
    to the server's image store (by sha256: one the server has is not sent again), the VMs
    naming them image:sha256:HEX, which a deploy ships to the hosts; with --image-dir they
    are converted into that folder instead (shared storage the hosts see at the same path).
    """
    from ediv.ovf.importer import import_into_scenario

    if target is not None:
        run_wbem(target, import_on_server, package=package, scenario=scenario, nets=nets,
                 vm_type=vm_type, trust=trust, image_dir=image_dir, deploy=deploy)
        return
    if image_dir is not None:
        raise click.UsageError("--image-dir applies with --server only (without it, disks "
                               "are converted beside the scenario file)")
    if not Path(scenario).is_file():
        raise click.BadParameter(f"no scenario file {scenario!r} (without --server, "
                                 "--scenario names a file)", param_hint="'--scenario'")
    with showing_eulas():
        result = import_into_scenario(package, scenario, net_map=parse_net_map(nets),
                                      vm_type=vm_type, trust=trust, **deploy.kwargs())
    _warn(result.warnings)
    click.echo(f"{scenario}: added VMs {', '.join(result.vms)}"
               + (f" and nets {', '.join(result.nets_added)}" if result.nets_added else "")
               + f" (previous version: {result.backup})")
    for path in result.files:
        click.echo(f"wrote {path}")


# -- ovf import --server: verify here, add each VM with DefineSystem ------------------------
def import_on_server(conn, package: str, scenario: str, nets: tuple[str, ...],
                     vm_type: str | None, trust: str | None, image_dir: str | None,
                     deploy: DeployChoices | None = None, **_: Any) -> None:
    """``ediv ovf import --server``: the package is verified before anything is sent; the
    VMs are checked against the server's scenario, their disks uploaded to the server's
    image store (or converted into ``image_dir``), then added one DefineSystem each (all
    removed again if one fails)."""
    from ediv.ovf.importer import open_appliance, remove_paths

    net_map = parse_net_map(nets)
    deploy = deploy or DeployChoices()
    with showing_eulas():
        appliance = open_appliance(package, net_map=net_map, vm_type=vm_type, trust=trust,
                                   **deploy.kwargs())
    current = _server_definition(conn, scenario)
    if current is not None:
        _check_fits(appliance, current, scenario)
    files = _server_disks(conn, appliance, image_dir, scenario)
    try:
        _define_vms(conn, appliance, scenario, net_map)
    except BaseException:
        remove_paths(files)
        raise
    _warn(appliance.warnings)
    click.echo(f"{scenario}: added VMs {', '.join(vm.name for vm in appliance.vms)}")
    for path in files:
        click.echo(f"wrote {path}")


def _server_definition(conn, name: str) -> Scenario | None:
    """The scenario ``name`` as the server holds it, which must be only defined; None when
    its text cannot be read here (the server then checks alone)."""
    import pywbem

    from ediv.scenario import parse_string

    try:
        inst = get_scenario(conn, name)
    except EdivError:
        if Path(name).is_file():
            raise EdivError(f"no scenario named {name!r} on the server (with --server, "
                            "--scenario names a scenario defined there, not a file)") from None
        raise
    if state_of(inst) != "defined":
        raise EdivError(f"scenario {name!r} is {state_of(inst)}: VMs can only be added while "
                        "it is defined; nothing imported")
    ssd = conn.GetInstance(pywbem.CIMInstanceName(
        "EDIV_ScenarioSettingData", {"InstanceID": f"ediv:scenario:{name}"}, namespace=NS))
    try:
        return parse_string(ssd.get("ScenarioDefinition") or "", name)
    except InputError:
        return None


def _check_fits(appliance: Appliance, current: Scenario, name: str) -> None:
    """Refuse VM names the scenario has and nets it lacks (the server cannot add nets)."""
    taken = [vm.name for vm in appliance.vms if current.vm(vm.name) is not None]
    if taken:
        raise EdivError(f"scenario {name!r} already has VMs named {', '.join(taken)}: "
                        "nothing imported")
    missing = [n for n in dict.fromkeys(n for vm in appliance.vms for n in vm.nets)
               if current.net(n) is None]
    if missing:
        have = ", ".join(n.name for n in current.nets) or "none"
        raise EdivError(f"scenario {name!r} lacks the nets {', '.join(missing)} (it has: "
                        f"{have}) and the server does not add nets; connect the package's "
                        "networks to nets of the scenario with --net OVFNET=NET: nothing "
                        "imported")


def _server_disks(conn, appliance: Appliance, image_dir: str | None,
                  scenario: str) -> list[Path]:
    """The boot disks of the UML VMs: with ``image_dir``, converted into it
    (``SCENARIO-VM.img``, shared storage) and the VMs pointed at them, the files written
    returned; without, converted into a private temporary folder, sent to the server's
    image store as ``SCENARIO-VM`` (nothing sent when it has that digest already) and the VMs
    pointed at ``image:sha256:<hex>``, which a deploy ships to the hosts by digest."""
    import shutil
    import tempfile

    from ediv.client.image_upload import upload_image
    from ediv.ovf.importer import ENV_DIR_SUFFIX, stage
    from ediv.ovf.translate import boot_disk
    from ediv.scenario.model import Filesystem

    env = appliance.envelope
    disks = [vm.name for vs, vm in appliance.pairs
             if vm.type != "container" and boot_disk(env, vs) is not None]
    if not disks:
        return []
    names = {vm.name: f"{scenario}-{vm.name}" for vm in appliance.vms}
    if image_dir is not None:
        staged = stage(appliance, image_dir, names=names)
        staged.moves = [(src, final) for src, final in staged.moves
                        if not final.name.endswith(ENV_DIR_SUFFIX)]
        return staged.commit()
    work = Path(tempfile.mkdtemp(prefix="ediv-ovf-upload-"))  # 0700
    try:
        staged = stage(appliance, work, names=names)
        sent: dict[str, str] = {}  # converted file -> image reference (a disk shared by VMs)
        for vm in appliance.vms:
            if vm.filesystem is None or vm.type == "container":
                continue
            final = vm.filesystem.path
            if final not in sent:
                src = next(s for s, f in staged.moves if str(f) == final)
                digest = upload_image(conn, src, _image_name(names[vm.name]))
                sent[final] = f"image:{digest}"
            vm.filesystem = Filesystem(path=sent[final], type=vm.filesystem.type)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return []


def _image_name(text: str) -> str:
    """An image store name (64 of letters, digits, '.', '_', '-') from SCENARIO-VM; a longer
    or changed one keeps a hash of the original, so two VMs never share a name (re-pointing
    a name lets the store drop the blob it named)."""
    import hashlib
    import re

    name = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip("._-") or "ovf"
    if name == text and len(name) <= 64:
        return name
    return f"{name[:51]}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _define_vms(conn, appliance: Appliance, scenario: str, net_map: dict[str, str]) -> None:
    """One DefineSystem per VM; on any failure the VMs added so far are removed again."""
    import pywbem

    from ediv.ovf.cim import to_cim

    service = service_path(conn)
    added: list = []
    try:
        for vs, vm in appliance.pairs:
            vssd, rasds = to_cim(appliance.envelope, vs.id, net_map, vm_type=vm.type or "uml",
                                 image_path=vm.filesystem.path if vm.filesystem else None,
                                 eula_accepted=appliance.eula_accepted)
            if vssd["ElementName"] != vm.name:
                raise EdivError(f"{vs.id}: translated as {vssd['ElementName']!r}, expected "
                                f"{vm.name!r}")
            try:
                rv, out = conn.InvokeMethod("DefineSystem", service, [
                    ("SystemSettings", vssd), ("ResourceSettings", rasds),
                    ("ReferenceConfiguration", scenario_path(scenario))])
            except pywbem.CIMError as exc:
                reason = _one_line(exc.status_description or exc.status_code_name)
                raise EdivError(f"{vm.name}: {reason}; nothing imported") from None
            ok, _result, error = finished(conn, rv, out, f"adding {vm.name}", True)
            if not ok:
                raise EdivError(f"{vm.name}: {error}; nothing imported")
            added.append(out["ResultingSystem"])
    except BaseException:
        _undefine(conn, service, added)
        raise


def _one_line(text: str) -> str:
    """A server message with diagnostics on lines of their own, as one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) <= 1:
        return text.strip()
    return f"{lines[0].rstrip(':')}: " + "; ".join(lines[1:])


def _undefine(conn, service, paths: list) -> None:
    import pywbem

    for path in reversed(paths):
        try:
            conn.InvokeMethod("DestroySystem", service, [("AffectedSystem", path)])
        except pywbem.Error as exc:
            click.echo(f"warning: {path.keybindings.get('Name')}: could not remove it again: "
                       f"{exc}", err=True)


@ovf_group.command("export")
@click.argument("name")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="OVA package to write.")
@click.option("--sign", "sign_key", type=click.Path(exists=True, dir_okay=False),
              help="PEM private key (RSA or EC) to sign the manifest with.")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False),
              help="PEM certificate of the signing key (and its chain), put in the .cert.")
@click.option("--disk-format", type=click.Choice(["vmdk", "raw"]), default="vmdk",
              show_default=True, help="How filesystem images are stored.")
@click.option("--state", "state_path", envvar="EDIV_STATE", type=click.Path(dir_okay=False),
              help="State store where NAME is looked up when it is not a file.")
def export_cmd(name: str, output: str, sign_key: str | None, cert: str | None,
               disk_format: str, state_path: str | None) -> None:
    """Write the VMs of a scenario (file NAME, or a scenario NAME of the state store, defined
    or deployed) as an OVF 2.0 package with a SHA256 manifest, optionally signed.

    Images of a deployed scenario are read while its UML VMs hold them (without qemu's
    locks). Net types, interface addresses and the VMs' /ovf-env.xml properties go into the
    package (an ediv section other OVF tools skip, and ProductSections); import reads
    them back."""
    from ediv.ovf.export import export_scenario

    scenario, state = load_for_export(name, state_path)
    result = export_scenario(scenario, output, disk_format=disk_format, sign_key=sign_key,
                             cert=cert, deployed=state is not None and state != "defined")
    _warn(result.warnings)
    click.echo(f"{result.path}: {len(result.vms)} VMs, {len(result.nets)} nets, "
               f"{len(result.disks)} disks" + (", signed" if result.signed else ""))


def load_for_export(name: str, state_path: str | None):
    """(scenario, state): the scenario in file ``name`` (state None), else the one the state
    store holds under ``name`` (defined, deployed...) with its state."""
    from ediv.scenario import load_scenario, load_string

    if Path(name).is_file():
        return load_scenario(name)[0], None
    from ediv import state as st

    path = state_path or st.DEFAULT_PATH
    if not Path(path).is_file():
        raise EdivError(f"{name}: no such scenario file, and no state store at {path}")
    store = st.StateStore(path)
    try:
        row = store.scenario(name)
    finally:
        store.close()
    if row is None or not row.spec:
        raise EdivError(f"{name}: no such scenario file, nor a scenario of that name in {path}")
    return load_string(row.spec, f"{name} (state store)", row.basedir or ".",
                       appliances=True)[0], row.state


def register(cli: click.Group) -> None:
    cli.add_command(ovf_group)
