"""The Docker set-up, checked by structure: no Docker engine runs here (nor in CI).

``compose.yaml`` is parsed as YAML and the ``Dockerfile`` line by line; the checks are the promises the README
makes about them: an official MongoDB started as a replica set of one, the service pointed at it, healthchecks on
both, a slim non-root image that runs ``handoff serve``.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "compose.yaml is not a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    assert isinstance(compose.get("services"), dict), "compose.yaml has no services"
    return compose["services"]


def _words(value: str | list[str]) -> list[str]:
    """A compose command or healthcheck test as a list of words, whichever form it was written in."""
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _healthcheck_text(service: dict[str, Any]) -> str:
    check = service.get("healthcheck")
    assert isinstance(check, dict), "service has no healthcheck"
    assert not check.get("disable"), "healthcheck is disabled"
    test = check["test"]
    words = _words(test)
    assert words, "healthcheck test is empty"
    assert words[0] in {"CMD", "CMD-SHELL"} or isinstance(test, str), f"unknown healthcheck form {words[0]!r}"
    return " ".join(words)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _port_pairs(service: dict[str, Any]) -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            pairs.add((str(port.get("published")), str(port["target"])))
        else:
            parts = str(port).split(":")
            pairs.add((parts[-2], parts[-1]))
    return pairs


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "Dockerfile has no FROM"
    return instructions[starts[-1] :]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not the exec (JSON array) form: {args}"
    return [str(v) for v in value]


# compose.yaml: mongodb


def test_mongodb_uses_official_mongo_8_image(services: dict[str, Any]) -> None:
    assert "mongodb" in services
    assert str(services["mongodb"]["image"]).startswith("mongo:8")


def test_mongodb_starts_as_replica_set_on_all_interfaces(services: dict[str, Any]) -> None:
    command = _words(services["mongodb"]["command"])
    assert command[0] == "mongod"
    assert "--replSet" in command
    assert command[command.index("--replSet") + 1] == "rs0"
    assert "--bind_ip_all" in command


def test_mongodb_healthcheck_initiates_the_replica_set_and_waits_for_primary(services: dict[str, Any]) -> None:
    text = _healthcheck_text(services["mongodb"])
    assert "mongosh" in text
    assert "rs.initiate" in text
    assert "_id: 'rs0'" in text or "_id:'rs0'" in text or '"rs0"' in text
    assert "mongodb:27017" in text, "the member must be registered under the name the service connects to"
    assert "isWritablePrimary" in text, "healthy must mean primary, not merely started"
    # Compose interpolates $ in every value; a stray one would silently rewrite the script.
    assert "$" not in text


def test_mongodb_healthcheck_timing_leaves_room_for_election(services: dict[str, Any]) -> None:
    check = services["mongodb"]["healthcheck"]
    assert "interval" in check
    assert "start_period" in check
    assert int(check.get("retries", 3)) >= 3


def test_mongodb_data_lives_in_a_named_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = compose.get("volumes") or {}
    mounted: dict[str, str] = {}
    for volume in services["mongodb"].get("volumes") or []:
        if isinstance(volume, dict):
            mounted[str(volume["target"])] = str(volume.get("source"))
        else:
            source, target = str(volume).split(":")[:2]
            mounted[target] = source
    assert "/data/db" in mounted
    assert mounted["/data/db"] in declared, "the volume at /data/db must be a named volume declared at top level"


# compose.yaml: handoff


def test_handoff_is_built_from_the_dockerfile(services: dict[str, Any]) -> None:
    assert "handoff" in services
    build = services["handoff"]["build"]
    if isinstance(build, dict):
        context = ROOT / build.get("context", ".")
        dockerfile = context / build.get("dockerfile", "Dockerfile")
    else:
        dockerfile = ROOT / build / "Dockerfile"
    assert dockerfile.resolve() == DOCKERFILE


def test_handoff_points_at_the_mongodb_replica_set(services: dict[str, Any]) -> None:
    url = _environment(services["handoff"])["HANDOFF_MONGODB_URL"]
    parts = urlsplit(url)
    assert parts.scheme == "mongodb"
    assert parts.hostname == "mongodb"
    assert (parts.port or 27017) == 27017
    assert parse_qs(parts.query).get("replicaSet") == ["rs0"]


def test_handoff_waits_for_a_healthy_mongodb(services: dict[str, Any]) -> None:
    depends_on = services["handoff"]["depends_on"]
    assert isinstance(depends_on, dict), "the short list form cannot wait for health"
    assert depends_on["mongodb"]["condition"] == "service_healthy"


def test_handoff_publishes_port_8000(services: dict[str, Any]) -> None:
    assert ("8000", "8000") in _port_pairs(services["handoff"])


def test_handoff_healthcheck_hits_healthz_without_curl(services: dict[str, Any]) -> None:
    text = _healthcheck_text(services["handoff"])
    assert "/healthz" in text
    assert ":8000" in text
    assert "curl" not in text, "the slim image has no curl"
    assert "$" not in text


def test_handoff_restarts_unless_stopped(services: dict[str, Any]) -> None:
    assert services["handoff"]["restart"] == "unless-stopped"


# Dockerfile


def test_dockerfile_final_image_is_slim_python(dockerfile: list[tuple[str, str]]) -> None:
    base = _final_stage(dockerfile)[0][1].split()[0]
    assert re.fullmatch(r"python:3\.1[1-9][\w.-]*-slim[\w.-]*", base), base


def test_dockerfile_installs_the_project_without_dev_extra(dockerfile: list[tuple[str, str]]) -> None:
    runs = [args for keyword, args in dockerfile if keyword == "RUN"]
    installs = [args for args in runs if re.search(r"\bpip install\b", args)]
    assert installs, "no pip install"
    assert any(re.search(r"\bpip install\b.*\s\.(\s|$)", args) for args in installs), "the project is not installed"
    assert not any("[dev]" in args for args in installs)


def test_dockerfile_runs_as_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    users = [args.split(":")[0] for keyword, args in _final_stage(dockerfile) if keyword == "USER"]
    assert users, "the final image has no USER"
    assert users[-1] not in {"root", "0"}


def test_dockerfile_exposes_8000(dockerfile: list[tuple[str, str]]) -> None:
    exposed = {port.split("/")[0] for keyword, args in dockerfile if keyword == "EXPOSE" for port in args.split()}
    assert "8000" in exposed


def test_dockerfile_cmd_serves_on_all_interfaces(dockerfile: list[tuple[str, str]]) -> None:
    cmds = [args for keyword, args in _final_stage(dockerfile) if keyword == "CMD"]
    assert cmds, "no CMD"
    cmd = _exec_form(cmds[-1])
    assert cmd[:2] == ["handoff", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - inside a container that is the point
    assert cmd[cmd.index("--port") + 1] == "8000"


def test_dockerfile_healthcheck_hits_healthz(dockerfile: list[tuple[str, str]]) -> None:
    checks = [args for keyword, args in _final_stage(dockerfile) if keyword == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    assert "/healthz" in checks[-1]
    assert "curl" not in checks[-1]


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git"} <= patterns
    # What the build copies must not be ignored.
    copied = {"pyproject.toml", "README.md", "src"}
    assert not copied & patterns
