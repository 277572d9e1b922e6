"""docker-compose.yml: every service supportbot waits for is one it is configured to use."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from service.config import PROJECT_ROOT, Settings
from service.ratelimit import RateLimits

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}: Compose's interpolation forms.
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str) -> str:
    """A value as Compose would pass it: defaults filled in, a sample where the user must set the variable."""
    def one(match: re.Match[str]) -> str:
        if match["op"] and match["op"].endswith("-"):
            return match["arg"]
        return f"sample-{match['name'].lower()}"

    return VARIABLE.sub(one, value)


def supportbot_service() -> dict[str, Any]:
    """The supportbot service as docker-compose.yml declares it."""
    service: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["supportbot"]
    return service


def supportbot_environment() -> dict[str, str]:
    """The supportbot service's environment, interpolated; a name without a value is unset when the shell lacks it."""
    declared = supportbot_service()["environment"]
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) if "=" in item else (item, None) for item in declared)
    return {name: interpolate(str(value)) for name, value in declared.items() if value is not None}


def test_every_service_supportbot_depends_on_is_reached_through_its_environment() -> None:
    environment = supportbot_environment()
    dependencies = list(supportbot_service()["depends_on"])

    used_by = {name: sorted(variable for variable, value in environment.items() if urlsplit(value).hostname == name)
               for name in dependencies}

    assert {"postgres", "redis"} <= set(dependencies)
    assert all(used_by.values()), f"started but not configured (no variable points at it): {used_by}"
    assert "SUPPORTBOT_DATABASE_URL" in used_by["postgres"]
    assert "SUPPORTBOT_RATE_LIMIT_STORAGE" in used_by["redis"]


def test_compose_environment_gives_shared_rate_limits_and_the_postgres_database(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith(("SUPPORTBOT_", "OPENAI_"))]:
        monkeypatch.delenv(name)
    for name, value in supportbot_environment().items():
        monkeypatch.setenv(name, value)

    # The real settings read the environment: a value they refuse (an empty admin token once) stops the
    # container at start-up, and a misspelt name (silently ignored) leaves the default in place.
    settings = Settings(_env_file=None)
    limits = RateLimits(settings)

    assert make_url(settings.resolved_database_url).host == "postgres"
    assert urlsplit(settings.rate_limit_storage).hostname == "redis"
    assert limits.in_memory is False, "each replica would count on its own"


def compose_command() -> list[str] | None:
    """`docker compose` (v2) or `docker-compose` (v1), whichever this machine has."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    found = shutil.which("docker-compose")
    return [found] if found else None


def test_compose_file_passes_docker_compose_own_validation(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env = {**os.environ, "POSTGRES_PASSWORD": "sample-password",
           "SUPPORTBOT_SECRET_KEY": "sample-secret-key-0123456789"}

    result = subprocess.run([*command, "-f", str(COMPOSE), "config", "--quiet"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
