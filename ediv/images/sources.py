"""The apt sources an image is built from: the machine's own, turned towards the image's suite.

ediv never hard-codes a mirror: it reads the host's deb822 files (``sources.list.d/*.sources``)
and one-line files (``sources.list``, ``sources.list.d/*.list``), keeps the Debian entries of
the host's release (``bookworm``, ``bookworm-updates``, ``bookworm-security``...), renames
their suites for the image's suite (``trixie``, ``trixie-updates``...) and hands the result
to mmdebstrap as a deb822 sources file. Entries of other origins (third-party repositories
of the host) are left out: an image holds Debian packages only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ediv.errors import EdivError

APT_DIR = Path("/etc/apt")


@dataclass
class Source:
    uris: list[str]
    suites: list[str]
    components: list[str]
    options: dict[str, str] = field(default_factory=dict)  # Signed-By, Architectures...

    def deb822(self) -> str:
        lines = ["Types: deb", f"URIs: {' '.join(self.uris)}", f"Suites: {' '.join(self.suites)}",
                 f"Components: {' '.join(self.components)}"]
        lines += [f"{k}: {v}" for k, v in self.options.items()]
        return "\n".join(lines) + "\n"


def parse_deb822(text: str) -> list[Source]:
    """The enabled ``Types: deb`` stanzas of a deb822 sources file."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip()
            fields[key] = value.strip()
        low = {k.lower(): v for k, v in fields.items()}
        if "deb" not in low.get("types", "").split() or low.get("enabled", "yes") == "no":
            continue
        if not low.get("uris") or not low.get("suites"):
            continue
        options = {k: v for k, v in fields.items() if k.lower() in (
            "signed-by", "architectures", "trusted", "check-valid-until")}
        out.append(Source(low["uris"].split(), low["suites"].split(),
                          low.get("components", "main").split(), options))
    return out


def parse_one_line(text: str) -> list[Source]:
    """``deb [opts] URI SUITE COMPONENT...`` lines."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        m = re.match(r"deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)", line)
        if not m:
            continue
        options = {}
        for opt in (m.group(1) or "").split():
            k, _, v = opt.partition("=")
            if k == "signed-by":
                options["Signed-By"] = v
            elif k == "arch":
                options["Architectures"] = v.replace(",", " ")
        out.append(Source([m.group(2)], [m.group(3)], m.group(4).split() or ["main"], options))
    return out


def host_sources(apt_dir: Path = APT_DIR) -> list[Source]:
    found = []
    main = apt_dir / "sources.list"
    if main.is_file():
        found += parse_one_line(main.read_text(errors="replace"))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for p in sorted(parts.iterdir()):
            if p.suffix == ".sources":
                found += parse_deb822(p.read_text(errors="replace"))
            elif p.suffix == ".list":
                found += parse_one_line(p.read_text(errors="replace"))
    return found


def host_codename(os_release: Path = Path("/etc/os-release")) -> str | None:
    try:
        text = os_release.read_text()
    except OSError:
        return None
    m = re.search(r'^VERSION_CODENAME="?([a-z]+)"?$', text, re.M)
    return m.group(1) if m else None


def for_suite(sources: list[Source], host: str, suite: str) -> list[Source]:
    """The entries of the host's release ``host``, with ``host`` renamed ``suite`` in every
    suite name (``bookworm-updates`` -> ``trixie-updates``); other entries dropped."""
    out = []
    for s in sources:
        suites = []
        for name in s.suites:
            if name == host:
                suites.append(suite)
            elif name.startswith(host + "-"):
                suites.append(suite + name[len(host):])
        if suites:
            out.append(Source(s.uris, suites, s.components, dict(s.options)))
    return out


def sources_text(suite: str, mirror: str | None = None, apt_dir: Path = APT_DIR,
                 codename: str | None = None) -> str:
    """The deb822 sources mmdebstrap gets: ``mirror`` alone when given, else the host's."""
    if mirror:
        if "://" not in mirror:
            raise EdivError(f"--mirror wants a URL such as http://HOST/debian, not {mirror!r}")
        return Source([mirror], [suite], ["main"]).deb822()
    host = codename or host_codename()
    if not host:
        raise EdivError("cannot tell this machine's Debian release (/etc/os-release has no "
                        "VERSION_CODENAME); pass --mirror URL")
    picked = for_suite(host_sources(apt_dir), host, suite)
    if not picked:
        raise EdivError(f"no Debian apt source for {host} in {apt_dir} to build {suite} from; "
                        "pass --mirror URL")
    return "\n".join(s.deb822() for s in picked)
