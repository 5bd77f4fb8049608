"""What installing orderrelay adds: one import name, ``orderrelay``, holding every folder of the repository's
code as a subpackage (worker/ as orderrelay.worker, ...), the migrations with it. Built as pip builds it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("orderrelay", "api", "config", "schemas", "providers", "tasks", "worker", "store", "sandbox")


def test_a_wheel_adds_the_one_import_name_orderrelay(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            str(tmp_path / "out"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = (tmp_path / "out").glob("orderrelay-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"orderrelay", wheel.name.split("-py3")[0] + ".dist-info"}
    packages = {str(Path(n).parent) for n in names if n.endswith("__init__.py")}
    wanted = {
        "orderrelay",
        *(f"orderrelay/{f}" for f in FOLDERS[1:]),
        "orderrelay/core",
        "orderrelay/foundation",
        "orderrelay/tools",
    }
    assert wanted <= packages
    ours = {str(p.relative_to(ROOT).with_suffix("")) for f in FOLDERS for p in (ROOT / f).rglob("*.py")}
    shipped = {n.removeprefix("orderrelay/").removesuffix(".py") for n in names if n.endswith(".py")}
    missing = {m for m in ours if m.removeprefix("orderrelay/") not in shipped}
    assert missing == set()  # every module of every folder is in the wheel
    migrations = sorted(p.name for p in (ROOT / "store" / "migrations").glob("*.sql"))
    assert sorted(Path(n).name for n in names if n.startswith("orderrelay/store/migrations/")) == migrations
