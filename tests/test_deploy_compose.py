"""deploy/compose.yaml and deploy/nginx.conf: replicas behind nginx that agree on secrets, proxy and schema."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from service.config import PROJECT_ROOT, Settings

from .test_compose import compose_command, interpolate

DEPLOY = PROJECT_ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
NGINX_CONF = DEPLOY / "nginx.conf"
SAMPLE_SECRETS = {"POSTGRES_PASSWORD": "sample-password", "SUPPORTBOT_SECRET_KEY": "sample-secret-key-0123456789",
                  "SUPPORTBOT_ADMIN_TOKEN": "sample-admin-token-0123456789"}


def services() -> dict[str, dict[str, Any]]:
    """The services of deploy/compose.yaml, anchors merged."""
    found: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    return found


def replicas() -> dict[str, dict[str, Any]]:
    """The services that run `supportbot serve`."""
    return {name: service for name, service in services().items() if service.get("command", [])[:2] == [
        "supportbot", "serve"]}


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as Compose passes it: names without a value are left out (unset in the shell)."""
    return {name: interpolate(str(value)) for name, value in service["environment"].items() if value is not None}


def upstream_servers() -> list[str]:
    """host:port of every server in nginx.conf's supportbot upstream."""
    block = re.search(r"upstream supportbot \{(.*?)\}", NGINX_CONF.read_text(encoding="utf-8"), re.S)
    assert block is not None
    return re.findall(r"^\s*server\s+(\S+?)(?:\s|;)", block.group(1), re.M)


def test_nginx_balances_over_exactly_the_replicas() -> None:
    assert len(replicas()) >= 2
    assert sorted(upstream_servers()) == sorted(f"{name}:8000" for name in replicas())


def test_every_replica_shares_secrets_database_and_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: set[tuple[str, ...]] = set()
    for name, service in replicas().items():
        env = environment(service)
        for variable in [n for n in os.environ if n.startswith(("SUPPORTBOT_", "OPENAI_"))]:
            monkeypatch.delenv(variable)
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        settings = Settings(_env_file=None)

        assert make_url(settings.resolved_database_url).host == "postgres", name
        assert urlsplit(settings.rate_limit_storage).hostname == "redis", name
        assert settings.redis_url and urlsplit(settings.redis_url).hostname == "redis", name
        # Left unset, each replica would generate its own: tokens one signs would fail on the others.
        assert settings.secret_key and settings.admin_token, name
        seen.add((settings.resolved_database_url, settings.secret_key, settings.admin_token))
    assert len(seen) == 1, "all replicas use the same database and secrets"


def test_only_nginx_is_trusted_to_forward_the_client_address() -> None:
    nginx = services()["nginx"]
    address = nginx["networks"]["default"]["ipv4_address"]

    for name, service in replicas().items():
        assert environment(service)["SUPPORTBOT_TRUSTED_PROXIES"] == address, name
        assert "ports" not in service, f"{name} is reachable around nginx"
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in NGINX_CONF.read_text(encoding="utf-8")


def test_the_schema_is_migrated_once_before_any_replica_starts() -> None:
    migrate = services()["migrate"]

    assert migrate["command"] == ["supportbot", "db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in replicas().items():
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_compose_leaves_streams_time_to_finish_on_stop() -> None:
    for name, service in replicas().items():
        grace = int(environment(service)["SUPPORTBOT_SHUTDOWN_GRACE_SECONDS"])
        stop = int(str(service["stop_grace_period"]).rstrip("s"))
        assert stop > grace, f"{name}: Docker would SIGKILL streams still inside their grace"


def test_deploy_compose_passes_docker_compose_own_validation(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")

    result = subprocess.run([*command, "-f", str(COMPOSE), "config", "--quiet"], cwd=tmp_path,
                            env={**os.environ, **SAMPLE_SECRETS}, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
