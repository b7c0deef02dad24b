"""``ediv ovf ...``: OVF/OVA commands (inspect; convert/import/export come later)."""

from __future__ import annotations

import json
import sys

import click

from ediv.ovf.inspect import Inspection, inspect_package

EXIT_VERIFY_FAILED = 2


@click.group("ovf")
def ovf_group() -> None:
    """Read, verify and convert OVF descriptors and OVA packages."""


@ovf_group.command("inspect")
@click.argument("package", type=click.Path(exists=True, dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print the inspection as JSON.")
@click.option("--trust", type=click.Path(exists=True),
              help="CA certificates (PEM bundle or folder) trusted to sign packages; "
                   "default: the system CA bundle.")
@click.option("--schema-dir", type=click.Path(exists=True, file_okay=False),
              help="Folder with the DMTF DSP8023 schemas: validate the descriptor (advisory).")
def inspect_cmd(package: str, as_json: bool, trust: str | None, schema_dir: str | None) -> None:
    """Summarise PACKAGE (OVA, .ovf or package folder) and verify its manifest and signature.

    Exit status: 0 when everything present verifies, 2 when a manifest or signature check
    fails, 1 when the package cannot be read.
    """
    result = inspect_package(package, trust=trust, schema_dir=schema_dir)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(render_text(result))
    if result.failed:
        if as_json:
            click.echo(f"ediv: verification failed: {failure_reason(result)}", err=True)
        sys.exit(EXIT_VERIFY_FAILED)


def failure_reason(result: Inspection) -> str:
    parts = []
    if result.manifest.status in ("mismatch", "invalid"):
        detail = next((d for d in result.manifest.details if "mismatch" in d
                       or "not covered" in d or "not in the package" in d),
                      result.manifest.details[0] if result.manifest.details else "")
        parts.append(f"manifest {result.manifest.status}: {detail}")
    if result.signature.status in ("invalid", "untrusted", "expired"):
        detail = next((d for d in reversed(result.signature.details)
                       if not d.startswith("weak:")), "")
        parts.append(f"signature {result.signature.status}: {detail}")
    return "; ".join(parts)


def render_text(result: Inspection) -> str:
    data = result.to_json()
    lines = [f"{result.source} ({result.package_kind}, descriptor {result.descriptor})",
             f"OVF {data['ovf_version']}"
             + (f" (declares {data['declared_version']})" if data["declared_version"] else "")
             + (f", dialect {data['dialect']}" if data["dialect"] else "")]
    if data["configuration"]:
        lines.append(f"deployment option: {data['configuration']} "
                     f"(of {', '.join(data['deployment_options'])})")
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
        for p in data["properties"]:
            lines.append(f"  {p['key']} = {p['value'] if p['value'] is not None else ''}")
    lines.append(f"manifest: {result.manifest.status}")
    lines.extend(f"  {d}" for d in result.manifest.details)
    lines.append(f"signature: {result.signature.status}")
    lines.extend(f"  {d}" for d in result.signature.details)
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


def register(cli: click.Group) -> None:
    cli.add_command(ovf_group)
