"""`supportbot init`: the example prompts and knowledge written into a directory, never over anyone's files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from service.config import PROJECT_ROOT

from .processes import SUPPORTBOT


def supportbot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI with no SUPPORTBOT_ settings: prompts and knowledge are read from `cwd`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPPORTBOT_", "OPENAI_"))}
    return subprocess.run([SUPPORTBOT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def files_under(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under `root`."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_init_writes_the_examples_and_says_what_to_run_next(tmp_path: Path) -> None:
    result = supportbot("init", "site", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    for name in ("prompts", "knowledge"):
        assert files_under(tmp_path / "site" / name) == files_under(PROJECT_ROOT / name)
    assert result.stdout.splitlines()[-5:-1] == [
        f"  cd {Path('site')}",
        "  supportbot prompt check    # validates the files; run it after each edit",
        "  supportbot db upgrade      # creates the database: data/supportbot.db unless SUPPORTBOT_DATABASE_URL",
        "  supportbot serve           # http://127.0.0.1:8000/ has a chat demo, /admin the review pages",
    ]
    check = supportbot("prompt", "check", cwd=tmp_path / "site")
    assert check.returncode == 0, check.stderr


def test_init_fills_folders_that_exist_but_are_empty(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "knowledge").mkdir()

    result = supportbot("init", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "  cd " not in result.stdout, "already there"
    assert (tmp_path / "prompts" / "support" / "v2.md.j2").is_file()


@pytest.mark.parametrize("existing", ["knowledge/our-product.md", "prompts/support/labels.yaml"])
def test_init_refuses_a_folder_with_files_and_writes_nothing(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).parent.mkdir(parents=True)
    (tmp_path / existing).write_text("ours\n")
    before = files_under(tmp_path)

    result = supportbot("init", ".", cwd=tmp_path)

    assert result.returncode == 1
    assert f"error: {existing.split('/')[0]}/ already has files; init overwrites nothing" in result.stderr
    assert files_under(tmp_path) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == [existing.split("/")[0]]


def test_prompt_check_in_a_directory_without_init_says_to_run_it(tmp_path: Path) -> None:
    result = supportbot("prompt", "check", cwd=tmp_path)

    assert result.returncode == 1
    assert f"error: {tmp_path / 'prompts'}: no such folder: `supportbot init` writes a starting one" in result.stderr
    assert f"error: {tmp_path / 'knowledge'}: no such folder" in result.stderr


def test_a_service_started_without_prompts_says_to_run_init(tmp_path: Path, sqlite_url: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient

    from service.api import create_app

    from .conftest import make_settings

    settings = make_settings(tmp_path, sqlite_url, prompts_dir=tmp_path / "prompts", knowledge_dir=tmp_path / "k")
    with caplog.at_level("WARNING"), TestClient(create_app(settings)) as client:
        conversation = client.post("/api/conversations").json()
        sent = client.post(f"/api/conversations/{conversation['conversation_id']}/messages",
                           headers={"Authorization": f"Bearer {conversation['token']}"}, json={"content": "hi"})

    assert sent.status_code == 503 and sent.json()["error"]["code"] == "prompt_unavailable"
    warning = next(r.getMessage() for r in caplog.records if "prompt is not available" in r.getMessage())
    assert "supportbot init" in warning and "503 prompt_unavailable" in warning
