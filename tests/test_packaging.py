"""checks/ ships as deliverck.checks, in a wheel and in an editable install."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from conftest import ROOT

PROBE = (
    "import importlib.util, deliverck.checks, deliverck.registry as r;"
    "assert importlib.util.find_spec('checks') is None, 'top-level checks importable';"
    "print(deliverck.checks.__path__[0]);"
    "print(','.join(r.check_ids()))"
)


def test_wheel_contains_checks_as_subpackage(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    wheel = next(tmp_path.glob("deliverck-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "deliverck/checks/mx.py" in names and "deliverck/checks/ptr.py" in names
    assert "deliverck/ndr/catalog.toml" in names
    assert {"deliverck/ndr/catalog/spf.toml", "deliverck/ndr/catalog/dnsbl.toml"} <= set(names)
    assert "deliverck/dnsbl/lists.toml" in names
    assert "deliverck/lab/zones/zen.spamhaus.org.zone" in names
    assert any(n.startswith("deliverck/lab/scenarios/") and n.endswith(".toml") for n in names)
    assert not any(n.startswith("checks/") for n in names)

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    # -S: no site processing, so the editable install's finder is not loaded;
    # dependencies come from this interpreter's site-packages.
    deps = sysconfig.get_paths()["purelib"]
    r = subprocess.run([sys.executable, "-S", "-c", PROBE], capture_output=True, text=True,
                       cwd=tmp_path, env={"PYTHONPATH": f"{target}:{deps}"}, timeout=60)
    assert r.returncode == 0, r.stderr
    path, ids = r.stdout.split()
    assert Path(path).is_relative_to(target)
    assert {"mx", "ptr"} <= set(ids.split(","))


def test_editable_install_maps_checks(tmp_path):
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    path, ids = r.stdout.split()
    assert Path(path) == ROOT / "checks"
    assert {"mx", "ptr"} <= set(ids.split(","))


def test_every_package_is_listed_in_pyproject():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "deliverck").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
