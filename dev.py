#!/usr/bin/env python3
"""The Quickstart's two commands, on any machine with Python 3.11+:

    python3 dev.py demo     # the main job end to end (embedded Redis and Postgres when none is configured)
    python3 dev.py test     # ruff, then the whole test suite

The first run makes ``.venv`` beside this file and installs orderrelay into it (again when pyproject.toml
changes). Anything after the command is passed on: ``python3 dev.py test -k extend``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_venv() -> Path:
    python = BIN / ("python.exe" if os.name == "nt" else "python")
    stamp = VENV / ".orderrelay-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not python.exists():
        print(f"creating {VENV} ...", flush=True)
        venv.create(VENV, with_pip=True)
    if not stamp.exists() or stamp.read_text() != digest:
        print("installing orderrelay, its demo servers and its test tools into .venv ...", flush=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", f"{ROOT}[test,demo]"], check=True)
        stamp.write_text(digest)
    return python


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by any python3
        sys.exit("orderrelay needs Python 3.11 or newer")
    if not argv or argv[0] not in {"demo", "test"}:
        sys.exit(__doc__)
    python = ensure_venv()
    command, rest = argv[0], argv[1:]
    if command == "demo":
        return subprocess.call([str(python), "-m", "orderrelay.cli", "demo", *rest], cwd=ROOT)
    for check in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        if subprocess.call([str(python), "-m", *check], cwd=ROOT) != 0:
            print(f"{' '.join(check)} failed", file=sys.stderr)
            return 1
    code = subprocess.call([str(python), "-m", "pytest", *rest], cwd=ROOT)
    if code == 5:
        print("pytest collected no tests: that is a failure here", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
