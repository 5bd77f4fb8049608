"""The image's install set serves every compose command: what the Dockerfile copies, installed as it installs it
(not editable, nothing from this checkout on the path), runs each command of docker-compose.yml against this
machine's Redis and Postgres and the sandbox, each up and answering. No Docker engine is needed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from orderrelay.tools import embedded, processes

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
# Runs a command from the installed set alone: this checkout's editable finder taken off the import system.
RUN = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__name__", "") != "_EditableFinder"]
sys.path.insert(0, sys.argv.pop(1))
command, sys.argv = sys.argv[1], sys.argv[1:]
if command == "celery":
    runpy.run_module("celery", run_name="__main__", alter_sys=True)
elif command == "where":
    import orderrelay.api, orderrelay.config, orderrelay.worker
    print(orderrelay.api.__file__, orderrelay.config.__file__, orderrelay.worker.__file__)
else:
    from orderrelay.cli import main
    main(prog_name="orderrelay")
"""


def copied() -> list[str]:
    """What the Dockerfile copies into the image before ``pip install .``."""
    found = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            found += line.split()[1:-1]
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("image")
    source, site = base / "app", base / "site"
    source.mkdir()
    for name in copied():
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


def command(site: Path, argv: list[str]) -> list[str]:
    return [sys.executable, "-c", RUN, str(site), *argv]


def answers(url: str, proc: processes.Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error is an answer
                return
            assert proc.alive(), proc.log()[-2000:]
            time.sleep(0.2)
    pytest.fail(f"{url} never answered: {proc.log()[-2000:]}")


def test_the_installed_set_is_what_runs(installed, tmp_path):
    out = subprocess.run(command(installed, ["where"]), capture_output=True, text=True, cwd=tmp_path, check=True)
    assert all(path.startswith(str(installed)) for path in out.stdout.split()), out.stdout


def test_every_compose_command_runs_from_the_image_install_set(installed, service_env, logs, tmp_path):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ours = {name: s["command"] for name, s in compose["services"].items() if "build" in s}
    env = {**service_env, "FLOWER_BASIC_AUTH": "operator:a-long-enough-password"}
    env["ORDERRELAY_API_KEYS"] = "image:operator=sha256:" + "0" * 64
    checks = {}
    for name, argv in ours.items():
        argv = list(argv)
        if "--port" in argv:
            port = embedded.free_port()
            argv[argv.index("--port") + 1] = str(port)
            checks[name] = port
        argv = [re.sub(r"^/tmp/", f"{tmp_path}/", a) for a in argv]
        # run where the image runs them: a folder without this checkout's source (celery imports from the cwd)
        proc = processes.Process(f"image-{name}", command(installed, argv), env, logs / f"image-{name}.log", tmp_path)
        try:
            if name == "migrate":
                assert proc.popen.wait(timeout=120) == 0, proc.log()[-2000:]
            elif argv[0] == "celery" and argv[3] == "worker":
                proc.wait_for("orderrelay worker ready", timeout=90)
            elif argv[0] == "celery":
                proc.wait_for("beat: Starting", timeout=60)
            else:
                path = {"flower": "/healthcheck", "api": "/healthz", "sandbox": "/_sandbox/health"}[name]
                answers(f"http://127.0.0.1:{checks[name]}{path}", proc)
            assert "Traceback" not in proc.log(), proc.log()[-3000:]
        finally:
            proc.stop()
    assert set(ours) == {"migrate", "worker", "notifier", "beat", "flower", "api", "sandbox"}
