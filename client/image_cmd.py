"""``ediv image build|list|inspect|rm|import``: the image store of this machine."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ediv.errors import EdivError
from ediv.images.store import DEFAULT_STORE, ENV_VAR, ImageStore, Manifest


class _ImageGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PermissionError as exc:
            raise EdivError(f"{exc.filename}: permission denied (the image store is private "
                            "to its owner: run as root, or pass --store)") from None


@click.group("image", cls=_ImageGroup)
def image_group() -> None:
    """Root filesystem images: build Debian images, list, inspect, import, remove.

    Images live in a content-addressed store (each file named by its sha256) with one
    manifest per name. A scenario names one as <filesystem type="cow">image:NAME</filesystem>
    (or image:sha256:HEX): 'ediv deploy' ships it by digest to each host's image_store.
    """


store_option = click.option(
    "--store", "store_dir", envvar=ENV_VAR, default=DEFAULT_STORE, show_default=True,
    type=click.Path(file_okay=False),
    help=f"The image store directory (also ${ENV_VAR}).")


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class _Lines:
    """Build progress on stderr: each phase line with the time since the start."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.start = time.monotonic()

    def __call__(self, line: str) -> None:
        if not self.quiet:
            click.echo(f"[{time.monotonic() - self.start:6.1f}s] {line}", err=True)


@image_group.command("build")
@click.argument("name")
@click.option("--suite", default="bookworm", show_default=True, help="Debian suite (codename).")
@click.option("--packages", default="", metavar="PKG,PKG...",
              help="Packages to add to Debian's minbase (comma or space separated), "
                   "e.g. frr,iproute2,iputils-ping,tcpdump.")
@click.option("--size", default="auto", show_default=True,
              help="Size of the ext4 file system, e.g. 512M or 2G; 'auto': the files "
                   "plus 25% and 128 MiB.")
@click.option("--format", "fmt", type=click.Choice(["raw", "qcow2"]), default="raw",
              show_default=True,
              help="raw boots under the UML and container drivers; qcow2 is for export.")
@click.option("--mirror", metavar="URL",
              help="Debian mirror to build from; default: this machine's own apt sources.")
@click.option("--variant", default="minbase", show_default=True,
              type=click.Choice(["minbase", "essential", "apt", "required"]),
              help="mmdebstrap variant.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@store_option
def build_cmd(name: str, suite: str, packages: str, size: str, fmt: str, mirror: str | None,
              variant: str, quiet: bool, as_json: bool, store_dir: str) -> None:
    """Build image NAME: a Debian root file system in an ext4 image.

    mmdebstrap installs SUITE from this machine's apt sources; mkfs.ext4 -d makes the
    image; the store keeps it under its sha256. Needs root and access to the Debian
    mirror; takes minutes.

    No systemd: ediv's own init boots the VM; start daemons from <exec> sequences.
    """
    from ediv.images.build import BuildSpec, build, parse_packages

    spec = BuildSpec(name=name, suite=suite, packages=parse_packages(packages), size=size,
                     format=fmt, variant=variant, mirror=mirror)
    m = build(ImageStore(store_dir), spec, _Lines(quiet))
    _print_manifest(ImageStore(store_dir), m, as_json)


@image_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", required=True, help="Name to store the image under.")
@click.option("--format", "fmt", type=click.Choice(["raw", "qcow2"]),
              help="Expected format (default: detected from the file).")
@click.option("--suite", help="Debian suite the image holds, for the manifest.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@store_option
def import_cmd(file: str, name: str, fmt: str | None, suite: str | None, as_json: bool,
               store_dir: str) -> None:
    """Copy image FILE into the store under NAME.

    FILE is only read; raw or qcow2 is detected from its content."""
    store = ImageStore(store_dir)
    total = Path(file).stat().st_size
    shown = [0]
    lines = _Lines(quiet=total < 64 << 20)  # progress for files that take a while

    def progress(done: int) -> None:
        if done - shown[0] >= max(total // 10, 64 << 20) or done == total:
            shown[0] = done
            lines(f"copied {done >> 20}/{total >> 20} MiB")

    m = store.import_file(file, name, fmt=fmt, suite=suite, progress=progress)
    _print_manifest(store, m, as_json)


@image_group.command("list")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of manifests.")
@store_option
def list_cmd(as_json: bool, store_dir: str) -> None:
    """List the images in the store."""
    images = ImageStore(store_dir).list()
    if as_json:
        click.echo(json.dumps([m.to_json() for m in images], indent=2))
        return
    if not images:
        click.echo(f"no images in {store_dir}", err=True)
        return
    rows = [("NAME", "DIGEST", "SIZE", "FORMAT", "SUITE", "CREATED", "PACKAGES")]
    rows += [(m.name, m.short, _human(m.size), m.format, m.suite or "-", m.created,
              ",".join(m.packages) or "-") for m in images]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])


@image_group.command("inspect")
@click.argument("ref", metavar="NAME|DIGEST")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest (plus path) as JSON.")
@click.option("--verify", is_flag=True, help="Hash the file again; exit 2 when it changed.")
@store_option
def inspect_cmd(ref: str, as_json: bool, verify: bool, store_dir: str) -> None:
    """Show one image's manifest and file path.

    DIGEST may be shortened to its first 6 or more hex digits."""
    store = ImageStore(store_dir)
    m = store.resolve(ref)
    ok = store.verify(m.name) if verify else None
    _print_manifest(store, m, as_json, verified=ok)
    if ok is False:
        sys.exit(2)


@image_group.command("rm")
@click.argument("refs", metavar="NAME|DIGEST...", nargs=-1, required=True)
@store_option
def rm_cmd(refs: tuple[str, ...], store_dir: str) -> None:
    """Remove images by name or digest.

    A digest removes every name of it; the file goes with its last name."""
    store = ImageStore(store_dir)
    for ref in refs:
        for m in store.remove(ref):
            click.echo(f"removed {m.name} ({m.short})")


def _print_manifest(store: ImageStore, m: Manifest, as_json: bool,
                    verified: bool | None = None) -> None:
    data = {**m.to_json(), "path": str(store.blob_path(m.digest))}
    if verified is not None:
        data["verified"] = verified
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    extra = data.pop("extra") or {}
    data.pop("packages")
    for k, v in data.items():
        click.echo(f"{k + ':':10} {v if v is not None else '-'}")
    click.echo(f"{'packages:':10} {', '.join(m.packages) or '-'}")
    for k in ("fs_size", "variant", "build_seconds"):
        if k in extra:
            v = _human(extra[k]) if k == "fs_size" else extra[k]
            click.echo(f"{k + ':':10} {v}")


def register(cli: click.Group) -> None:
    cli.add_command(image_group)
