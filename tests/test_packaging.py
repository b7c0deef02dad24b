"""`pip install .` (a wheel) must carry every subpackage and data file under the one `ediv`
package, and nothing generic at the top level of site-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

SUBPACKAGES = ["ediv", "ediv.scenario", "ediv.partition", "ediv.agent", "ediv.agent.drivers",
               "ediv.provider", "ediv.ovf", "ediv.client", "ediv.mof"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out), str(REPO)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"pip wheel failed: {r.stderr.strip()[-2000:]}"
    return next(out.glob("ediv-*.whl"))


def test_wheel_has_every_subpackage_and_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"ediv"}, f"generic top-level names installed: {top - {'ediv'}}"
    for pkg in SUBPACKAGES:
        assert f"{pkg.replace('.', '/')}/__init__.py" in names, pkg
    assert "ediv/scenario/vnuml.xsd" in names
    assert any(n.startswith("ediv/mof/dmtf/") and n.endswith(".mof") for n in names)
    assert any(n.startswith("ediv/mof/") and n.endswith("ediv.mof") for n in names)


def test_installed_wheel_imports_everything(wheel, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                        str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    code = ("import importlib, sys; sys.path.insert(0, sys.argv[1]); "
            "[importlib.import_module(m) for m in sys.argv[2:]]; "
            "import ediv.scenario as s; print(s.__file__)")
    r = subprocess.run([sys.executable, "-c", code, str(target), *SUBPACKAGES,
                        "ediv.client.cli", "ediv.agent.main", "ediv.provider.server"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(target))
