"""The `supportbot` command line: prompt list/show/check, db upgrade, chat."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import PROJECT_ROOT

from .processes import EXAMPLE_DIRS

SUPPORTBOT = str(Path(sys.executable).parent / "supportbot")


def run(args: list[str], tmp_path: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SUPPORTBOT_", "OPENAI_"))}
    environment |= {"SUPPORTBOT_DATA_DIR": str(tmp_path / "data"), **EXAMPLE_DIRS, **env}
    return subprocess.run([SUPPORTBOT, *args], capture_output=True, text=True, env=environment, input=stdin,
                          timeout=120, cwd=tmp_path)


def test_prompt_list_shows_versions_labels_and_what_is_served(tmp_path: Path) -> None:
    result = run(["prompt", "list"], tmp_path)

    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("support@v1") and "[baseline]" in line for line in lines)
    assert any(line.startswith("support@v2") and "production" in line and "(served)" in line for line in lines)


def test_prompt_show_prints_the_assembled_prompt_with_hash_and_estimate(tmp_path: Path) -> None:
    result = run(["prompt", "show", "support@v1", "--query", "dashboard slow"], tmp_path)

    assert result.returncode == 0
    first, second = result.stdout.splitlines()[:2]
    assert first.startswith("Internal reference sbc-"), "the canary opens the prompt (and closes it)"
    assert second == "You are a helpful support agent for Acme Analytics."
    assert result.stdout.rstrip().endswith(first)
    assert "Slow dashboard loads" in result.stdout
    header = result.stderr.strip().splitlines()[-1]
    assert header.startswith("# support@v1 sha256=") and "tokens" in header


def test_prompt_check_passes_on_the_shipped_files(tmp_path: Path) -> None:
    result = run(["prompt", "check"], tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": ok")


def test_prompt_check_reports_file_line_and_reason(tmp_path: Path) -> None:
    shutil.copytree(PROJECT_ROOT / "prompts", tmp_path / "prompts")
    shutil.copytree(PROJECT_ROOT / "knowledge", tmp_path / "knowledge")
    (tmp_path / "knowledge" / "broken.md").write_text("## Broken\nkeywords: a\npriority: high\n\nText.\n")

    result = run(["prompt", "check"], tmp_path, SUPPORTBOT_PROMPTS_DIR=str(tmp_path / "prompts"),
                 SUPPORTBOT_KNOWLEDGE_DIR=str(tmp_path / "knowledge"))

    assert result.returncode == 1
    assert f"{tmp_path / 'knowledge' / 'broken.md'}:3: unknown field 'priority'" in result.stderr


def test_db_upgrade_then_chat_in_the_terminal(tmp_path: Path) -> None:
    upgraded = run(["db", "upgrade"], tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "at revision" in upgraded.stdout

    chat = run(["chat"], tmp_path, stdin="How do I reset my password?\n\n")

    assert chat.returncode == 0, chat.stderr
    assert "Reset your password" in chat.stdout
    assert "provider=offline" in chat.stderr


def test_serve_and_chat_refuse_an_unmigrated_database(tmp_path: Path) -> None:
    result = run(["chat"], tmp_path)

    assert result.returncode == 2
    assert "supportbot db upgrade" in result.stderr


@pytest.mark.parametrize("args", [["prompt"], ["nosuch"], ["serve", "--port", "x"]])
def test_usage_errors_exit_with_status_2(tmp_path: Path, args: list[str]) -> None:
    assert run(args, tmp_path).returncode == 2
