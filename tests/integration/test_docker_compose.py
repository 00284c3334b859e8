"""The production docker-compose.yml stays valid: checked offline with `docker-compose config`.

No Docker daemon is needed -- `config` only parses, interpolates and validates the file.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = "docker-compose.yml"
PRODUCTION_SERVICES = {"postgres", "redis", "mailcatcher", "web", "worker", "scheduler"}


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("`docker-compose` is not on PATH; `make test` installs it "
                    "(Debian: apt-get install -y docker-compose).", pytrace=False)
    return subprocess.run([exe, "-f", COMPOSE_FILE, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def test_compose_file_validates_offline():
    result = _compose("config", "-q")
    assert result.returncode == 0, (
        f"docker-compose config -q exited {result.returncode}:\n{result.stderr}")


def test_compose_defines_the_production_services():
    result = _compose("config", "--services")
    assert result.returncode == 0, (
        f"docker-compose config --services exited {result.returncode}:\n{result.stderr}")
    services = {line.strip() for line in result.stdout.splitlines() if line.strip()}
    missing = PRODUCTION_SERVICES - services
    assert not missing, f"services missing from {COMPOSE_FILE}: {sorted(missing)} (have {sorted(services)})"
