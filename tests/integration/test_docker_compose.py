"""docker-compose.yml as an operator meets it, checked offline with the real `docker-compose config`.

No Docker daemon is needed: `config` only reads, interpolates and validates the file. Every run
happens in a temporary folder holding a copy of the compose file, with an environment that has
none of the settings, so neither a local `.env` nor the developer's shell can supply one. The
operator's settings are given the way the README says: in an `.env` file next to the compose file.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = "docker-compose.yml"

REQUIRED = ("SMTP_URL", "BASE_URL", "SECRET_KEY", "COORDINATOR_EMAILS", "MAIL_FROM",
            "POSTGRES_PASSWORD")
APP_SERVICES = ("migrate", "web", "worker", "scheduler")
PRODUCTION_SERVICES = {"postgres", "redis", *APP_SERVICES}
INSTANCE_PATH = "/var/lib/reportcycles"
GUNICORN_TARGET = "reportcycles.wsgi:create_app()"
MAIL_CATCHERS = ("mailpit", "mailhog", "mailcatcher")

# What an operator of the initiative would write into .env (invented, but not the defaults).
OPERATOR_SETTINGS = {
    "SMTP_URL": "smtp://berichte:Geheim2027@mail.vielfalt.example.net:587?starttls=1",
    "BASE_URL": "https://berichte.vielfalt.example.net",
    "SECRET_KEY": "9c1f0d6e2b7a48e3a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2",
    "COORDINATOR_EMAILS": "koordination@vielfalt.example.net,leitung@vielfalt.example.net",
    "MAIL_FROM": "Erfolgsfaktor Interkulturelle Öffnung <berichte@vielfalt.example.net>",
    "POSTGRES_PASSWORD": "4f8e2a9c7b1d3e5f",
}


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("`docker-compose` is not on PATH; `make test` installs it "
                    "(Debian: apt-get install -y docker-compose).", pytrace=False)
    return exe


def _compose(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run docker-compose in `folder` with nothing of the caller's environment but PATH."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)}
    return subprocess.run([_docker_compose(), "-f", COMPOSE_FILE, *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _stack(folder: Path, settings: dict[str, str] | None = None) -> Path:
    """A folder with a copy of the compose file and, if given, an operator's `.env`."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / COMPOSE_FILE, folder / COMPOSE_FILE)
    if settings is not None:
        (folder / ".env").write_text(
            "".join(f'{name}="{value}"\n' for name, value in settings.items()), encoding="utf-8")
    return folder


def _rendered(folder: Path, *options: str) -> dict:
    """The interpolated configuration as data.

    Compose v2 prints JSON on request; 1.29 prints only YAML, which is read with the interpreter
    docker-compose 1.x itself runs on (it depends on PyYAML; our test extras do not).
    """
    exe = _docker_compose()
    version = subprocess.run([exe, "version", "--short"], capture_output=True, text=True,
                             check=False).stdout.strip().lstrip("v")
    if version and int(version.split(".")[0]) >= 2:
        result = _compose(folder, *options, "config", "--format", "json")
        assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
        return json.loads(result.stdout)
    result = _compose(folder, *options, "config")
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    shebang = Path(exe).read_bytes().split(b"\n", 1)[0].decode()
    assert shebang.startswith("#!"), f"{exe} is not the Python docker-compose 1.x: {shebang!r}"
    to_json = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    parsed = subprocess.run([*shlex.split(shebang[2:]), "-c", to_json], input=result.stdout,
                            capture_output=True, text=True, check=True)
    return json.loads(parsed.stdout)


def _enabled(config: dict, profiles: tuple[str, ...] = ()) -> dict[str, dict]:
    """The services `up` starts with these profiles: those without `profiles` and those sharing
    one (1.29's `config` prints every service, v2's leaves out those of inactive profiles)."""
    return {name: service for name, service in config["services"].items()
            if not service.get("profiles") or set(service["profiles"]) & set(profiles)}


def _dependencies(service: dict) -> set[str]:
    depends_on = service.get("depends_on") or {}
    return set(depends_on)  # a list of names or a mapping of name -> condition


def _ports(service: dict) -> list[tuple[str, str, str]]:
    """(host address, published port, container port), from 1.29's short or v2's long syntax."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append((port.get("host_ip", ""), str(port.get("published", "")),
                          str(port["target"])))
            continue
        parts = str(port).split("/")[0].split(":")
        ports.append(tuple([""] * (3 - len(parts)) + parts))
    return ports


def _mounts(service: dict) -> set[tuple[str, str]]:
    """(source, target) of each volume, from 1.29's short or v2's long syntax."""
    mounts = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts.add((volume.get("source", ""), volume["target"]))
        else:
            source, target = str(volume).split(":")[:2]
            mounts.add((source, target))
    return mounts


def _command(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def _option(args: list[str], *names: str) -> str | None:
    """The value of a command-line option given as `--name value` or `--name=value`."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _without_templates(stderr: str) -> str:
    """1.29 echoes the raw `${VAR:?message}` templates before the error; keep only the error."""
    return re.sub(r"\$\{[^}]*\}", "", stderr)


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> dict:
    return _rendered(_stack(tmp_path_factory.mktemp("production"), OPERATOR_SETTINGS))


@pytest.fixture(scope="module")
def development(tmp_path_factory) -> dict:
    settings = {**OPERATOR_SETTINGS, "SMTP_URL": "smtp://mailpit:1025",
                "BASE_URL": "http://localhost:8000"}
    return _rendered(_stack(tmp_path_factory.mktemp("development"), settings), "--profile", "dev")


# ---- required settings ------------------------------------------------------------------------

def test_start_without_settings_fails_naming_a_missing_setting(tmp_path):
    result = _compose(_stack(tmp_path), "config", "-q")
    assert result.returncode != 0, "docker-compose accepted a stack without any settings"
    named = [name for name in REQUIRED
             if f"{name} is required" in _without_templates(result.stderr)]
    assert named, f"no missing setting named in:\n{result.stderr}"


@pytest.mark.parametrize("left_empty", [False, True], ids=["absent", "empty"])
@pytest.mark.parametrize("name", REQUIRED)
def test_each_required_setting_missing_stops_the_start_with_its_name(tmp_path, name, left_empty):
    settings = {key: value for key, value in OPERATOR_SETTINGS.items() if key != name}
    if left_empty:
        settings[name] = ""
    result = _compose(_stack(tmp_path, settings), "config", "-q")
    assert result.returncode != 0, f"docker-compose started without {name}"
    assert f"{name} is required" in _without_templates(result.stderr), result.stderr


def test_unedited_env_example_stops_the_start(tmp_path):
    folder = _stack(tmp_path)
    shutil.copy(ROOT / ".env.example", folder / ".env")
    result = _compose(folder, "config", "-q")
    assert result.returncode != 0, "the copied .env.example started without being filled in"
    assert " is required" in _without_templates(result.stderr), result.stderr


def test_env_example_lists_every_setting_the_compose_file_reads():
    compose = "\n".join(line for line in (ROOT / COMPOSE_FILE).read_text(encoding="utf-8")
                         .splitlines() if not line.lstrip().startswith("#"))
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    read = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", compose))
    defaults = dict(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):-([^}]*)\}", compose))
    assert set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", compose)) == set(REQUIRED)
    assert read == set(REQUIRED) | set(defaults), "a setting is read without `:?` or `:-default`"
    for name in REQUIRED:
        assert re.search(rf"^{name}=$", example, re.M), f"{name} is not an empty line in .env.example"
    for name, default in defaults.items():
        assert f"\n# {name}={default}\n" in example, (
            f"optional {name} is not shown with its default {default!r} in .env.example")


# ---- what a configured stack runs -------------------------------------------------------------

def test_compose_file_validates_offline_with_the_settings_given(tmp_path):
    result = _compose(_stack(tmp_path, OPERATOR_SETTINGS), "config", "-q")
    assert result.returncode == 0, f"docker-compose config -q exited {result.returncode}:\n{result.stderr}"


def test_compose_defines_the_production_services(production):
    missing = PRODUCTION_SERVICES - set(_enabled(production))
    assert not missing, f"services missing from the default profile: {sorted(missing)}"


def test_settings_from_env_file_reach_every_app_service(production):
    for name in APP_SERVICES:
        env = production["services"][name]["environment"]
        for key in ("SMTP_URL", "BASE_URL", "SECRET_KEY", "COORDINATOR_EMAILS", "MAIL_FROM"):
            assert env[key] == OPERATOR_SETTINGS[key], f"{name}: {key} is {env[key]!r}"
        assert "localhost" not in env["BASE_URL"] and "127.0.0.1" not in env["BASE_URL"]
        assert "mailpit" not in env["SMTP_URL"]
        assert env["DATABASE_URL"] == (
            f"postgresql+psycopg://reportcycles:{OPERATOR_SETTINGS['POSTGRES_PASSWORD']}"
            "@postgres:5432/reportcycles")
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert env["INSTANCE_PATH"] == INSTANCE_PATH
    postgres_env = production["services"]["postgres"]["environment"]
    assert postgres_env["POSTGRES_PASSWORD"] == OPERATOR_SETTINGS["POSTGRES_PASSWORD"]


def _is_mail_catcher(name: str, service: dict) -> bool:
    return any(word in f"{name} {service.get('image', '')}" for word in MAIL_CATCHERS)


def test_default_profile_has_no_mail_catcher(production):
    enabled = _enabled(production)
    catchers = [name for name, service in enabled.items() if _is_mail_catcher(name, service)]
    assert not catchers, f"{catchers} run in the default (production) profile"
    for name, service in enabled.items():
        outside = _dependencies(service) - set(enabled)
        assert not outside, f"{name} depends on {sorted(outside)}, not started by default"


def test_dev_profile_adds_mailpit_on_loopback_only(development):
    enabled = _enabled(development, ("dev",))
    assert "mailpit" in enabled, "`--profile dev` does not start Mailpit"
    ports = _ports(enabled["mailpit"])
    assert ("127.0.0.1", "8025", "8025") in ports
    for host, published, target in ports:
        assert host == "127.0.0.1", f"Mailpit port {target} published on {host or 'every address'}"
        assert target != "1025", "Mailpit's SMTP port is published outside the compose network"
    assert development["services"]["web"]["environment"]["SMTP_URL"] == "smtp://mailpit:1025"


def test_web_runs_gunicorn_with_several_workers_and_a_long_timeout(production):
    args = _command(production["services"]["web"])
    assert args[0] == "gunicorn", args
    assert args[-1] == GUNICORN_TARGET, args
    assert _option(args, "--bind", "-b") == "0.0.0.0:8000", args
    timeout = _option(args, "--timeout", "-t")
    assert timeout is not None and int(timeout) >= 60, f"timeout {timeout} too short for 12 MB"
    workers = int(_option(args, "--workers", "-w") or 1)
    threads = int(_option(args, "--threads") or 1)
    assert workers * threads > 1, args


def test_web_is_published_on_loopback_for_the_reverse_proxy(production):
    assert _ports(production["services"]["web"]) == [("127.0.0.1", "8000", "8000")]


def test_uploads_volume_is_mounted_on_web(production):
    assert ("uploads", f"{INSTANCE_PATH}/uploads") in _mounts(production["services"]["web"])
    assert "uploads" in production["volumes"]


def test_worker_and_scheduler_have_health_checks(production):
    for name in ("worker", "scheduler"):
        healthcheck = production["services"][name].get("healthcheck") or {}
        assert healthcheck.get("test") == ["CMD", "reportcycles", "health", name], name
    web_check = production["services"]["web"]["healthcheck"]["test"]
    assert any("/healthz" in part for part in web_check), web_check


def test_app_services_wait_for_migration_and_healthy_backends(production):
    assert _command(production["services"]["migrate"]) == ["reportcycles", "init"]
    for name in ("web", "worker", "scheduler"):
        depends_on = production["services"][name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name


# ---- the image --------------------------------------------------------------------------------

def test_image_runs_the_same_gunicorn_command_as_a_non_root_user(production):
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", dockerfile, re.M)
    assert cmd, "the Dockerfile has no CMD in exec form"
    assert json.loads(cmd.group(1)) == _command(production["services"]["web"])
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0"), f"the image runs as {users or 'root'}"
    installs = re.findall(r"pip install[^\n&]*", dockerfile)
    assert installs and not any(re.search(r"\s(-e|--editable)\s", f"{i} ") for i in installs), installs
    assert f"INSTANCE_PATH={INSTANCE_PATH}" in dockerfile


def test_build_context_leaves_out_local_state_and_secrets():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    missing = {".venv", "instance", ".git", "tests", ".env"} - ignored
    assert not missing, f".dockerignore lets {sorted(missing)} into the image"
