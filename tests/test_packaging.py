"""checks/ ships as deliverck.checks, in a wheel and in an editable install."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

PROBE = (
    "import importlib.util, deliverck.checks, deliverck.registry as r;"
    "assert importlib.util.find_spec('checks') is None, 'top-level checks importable';"
    "print(deliverck.checks.__path__[0]);"
    "print(','.join(r.check_ids()))"
)


# The lab's data as the lab reads it: scenarios/*.toml and zones/*.zone next to its modules.
DATA_PROBE = (
    "from deliverck.lab.scenarios import load_all; from deliverck.lab.plan import BUILTIN_ZONES;"
    "print(len(load_all()), len(list(BUILTIN_ZONES.glob('*.zone'))))"
)

# Data files, by directory: every one must be in the wheel.
DATA = {"deliverck/lab/scenarios": "*.toml", "deliverck/lab/zones": "*.zone", "deliverck/ndr/catalog": "*.toml",
        "deliverck/ndr": "*.toml", "deliverck/records": "*.toml", "deliverck/explain": "*.toml",
        "deliverck/lab": "*.toml", "deliverck/report/templates": "*"}


def _source_copy(dest: Path) -> Path:
    """The checkout without its build/ directory: setuptools reuses build/lib, so a module or
    zone removed from the tree would still reach a wheel built in place."""
    import shutil

    skip = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                                  ".hypothesis")
    shutil.copytree(ROOT, dest, ignore=skip)
    return dest


@pytest.mark.slow
def test_wheel_contains_checks_as_subpackage(tmp_path):
    source = _source_copy(tmp_path / "source")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    # issue 13: `make demo` (pip install) printed ~130 lines of setuptools warnings about the
    # data directories; the data is declared, so a quiet build warns of nothing.
    said = build.stdout + build.stderr
    assert "warning" not in said.lower() and "absent from the `packages`" not in said, said[:2000]
    wheel = next(tmp_path.glob("deliverck-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for directory, pattern in DATA.items():
        files = {str(p.relative_to(ROOT)) for p in (ROOT / directory).glob(pattern)}
        assert files and files <= set(names), sorted(files - set(names))
    assert "deliverck/checks/mx.py" in names and "deliverck/checks/ptr.py" in names
    assert "deliverck/ndr/catalog.toml" in names
    assert {"deliverck/ndr/catalog/spf.toml", "deliverck/ndr/catalog/dnsbl.toml"} <= set(names)
    assert "deliverck/records/dnsbl-lists.toml" in names
    assert "deliverck/report/templates/report.html.j2" in names      # issue 19: the HTML report
    assert "deliverck/lab/zones/zen.spamhaus.org.zone" in names
    assert any(n.startswith("deliverck/lab/scenarios/") and n.endswith(".toml") for n in names)
    assert not any(n.startswith("checks/") for n in names)
    # issue 15: the workshop stays out of the product: no benchmark code or zone, and the
    # shipped block lists are real ones; the lab's fixture lists ship with the lab.
    assert not [n for n in names if "bench" in n.lower()]
    assert "deliverck/lab/dnsbl-lists.toml" in names
    import tomllib

    with zipfile.ZipFile(wheel) as z:
        shipped = tomllib.loads(z.read("deliverck/records/dnsbl-lists.toml").decode("utf-8"))["list"]
        lab = tomllib.loads(z.read("deliverck/lab/dnsbl-lists.toml").decode("utf-8"))["list"]
    assert shipped and not [x["id"] for x in shipped if x.get("lab") or x["zone"].endswith(".test")]
    assert lab and all(x.get("lab") for x in lab)

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
    r = subprocess.run([sys.executable, "-S", "-c", DATA_PROBE], capture_output=True, text=True,
                       cwd=tmp_path, env={"PYTHONPATH": f"{target}:{deps}"}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(len(list((ROOT / "deliverck/lab/scenarios").glob("*.toml")))),
                                str(len(list((ROOT / "deliverck/lab/zones").glob("*.zone"))))]


@pytest.mark.slow
def test_editable_install_maps_checks(tmp_path):
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    path, ids = r.stdout.split()
    assert Path(path) == ROOT / "checks"
    assert {"mx", "ptr"} <= set(ids.split(","))
    # ... and finds the lab's data where it lives in the checkout
    r = subprocess.run([sys.executable, "-c", DATA_PROBE], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(len(list((ROOT / "deliverck/lab/scenarios").glob("*.toml")))),
                                str(len(list((ROOT / "deliverck/lab/zones").glob("*.zone"))))]


def test_every_package_is_listed_in_pyproject():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "deliverck").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
