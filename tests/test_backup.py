"""Backups as the README gives them: taken while the service runs, restored elsewhere, served, read back.

SQLite: `sqlite3 supportbot.db ".backup 'backup.db'"` (or Python's backup API) into a new file.
PostgreSQL: `pg_dump --format=custom` and `pg_restore --no-owner` into a new database.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from .deploy_support import postgres_database, require
from .processes import ServiceProcess

SECRET_KEY = "backup-test-secret-key-0123456789"  # restored with the data: conversation tokens are signed with it
QUESTIONS = ["How do I export a dashboard?", "And how do I reset my password?"]


def served(tmp_path: Path, database_url: str) -> ServiceProcess:
    """`supportbot serve` on `database_url` with the offline provider and the backup's secret key."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    service = ServiceProcess(tmp_path, SUPPORTBOT_DATABASE_URL=database_url, SUPPORTBOT_SECRET_KEY=SECRET_KEY,
                             SUPPORTBOT_LOG_LEVEL="WARNING")
    service.start()
    return service


def write_conversation(base: str) -> tuple[str, dict[str, str]]:
    """A conversation of two turns through the API; its id and the visitor's auth header."""
    created = httpx.post(f"{base}/api/conversations", timeout=10).json()
    auth = {"Authorization": f"Bearer {created['token']}"}
    for question in QUESTIONS:
        response = httpx.post(f"{base}/api/conversations/{created['conversation_id']}/messages", headers=auth,
                              json={"content": question}, timeout=30)
        assert response.status_code == 200, response.text
    return created["conversation_id"], auth


def read_back(base: str, conversation_id: str, auth: dict[str, str]) -> list[tuple[str, str]]:
    """(role, content) of the conversation, as the visitor's widget reads it."""
    response = httpx.get(f"{base}/api/conversations/{conversation_id}", headers=auth, timeout=10)
    assert response.status_code == 200, response.text
    return [(m["role"], m["content"]) for m in response.json()["messages"]]


def backup_with_sqlite3_cli(source: Path, target: Path) -> None:
    require(shutil.which("sqlite3") is not None, "the sqlite3 command")
    subprocess.run(["sqlite3", str(source), f".backup '{target}'"], check=True, capture_output=True, timeout=60)


def backup_with_python(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as live, sqlite3.connect(target) as copy:
        live.backup(copy)
    live.close()
    copy.close()


@pytest.mark.parametrize("backup", [backup_with_sqlite3_cli, backup_with_python], ids=["sqlite3-cli", "python"])
def test_sqlite_backup_taken_while_serving_restores_into_a_new_file_and_serves(
    tmp_path: Path, sqlite_url: str, backup: Callable[[Path, Path], None]
) -> None:
    live_file = Path(make_url(sqlite_url).database or "")
    service = served(tmp_path / "live", sqlite_url)
    try:
        conversation_id, auth = write_conversation(service.base)
        original = read_back(service.base, conversation_id, auth)
        backup(live_file, tmp_path / "backup.db")
    finally:
        service.stop()
    restored_file = tmp_path / "restored" / "supportbot.db"
    restored_file.parent.mkdir()
    shutil.copy(tmp_path / "backup.db", restored_file)

    with sqlite3.connect(restored_file) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()
    restored = served(tmp_path / "restored", f"sqlite:///{restored_file}")
    try:
        assert read_back(restored.base, conversation_id, auth) == original
    finally:
        restored.stop()
    assert [content for role, content in original if role == "user"] == QUESTIONS


@pytest.mark.postgres
def test_postgres_dump_taken_while_serving_restores_into_a_new_database_and_serves(tmp_path: Path) -> None:
    for tool in ("pg_dump", "pg_restore"):
        require(shutil.which(tool) is not None, f"the {tool} command")
    dump = tmp_path / "supportbot.dump"
    with postgres_database("sbbackup") as live_url:
        service = ServiceProcess(tmp_path, SUPPORTBOT_DATABASE_URL=live_url)
        service.migrate()
        service = served(tmp_path / "live", live_url)
        try:
            conversation_id, auth = write_conversation(service.base)
            original = read_back(service.base, conversation_id, auth)
            subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", libpq(live_url)], check=True,
                           capture_output=True, timeout=120)
        finally:
            service.stop()

    with postgres_database("sbrestore") as restored_url:
        subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={libpq(restored_url)}", str(dump)],
                       check=True, capture_output=True, timeout=120)
        restored = served(tmp_path / "restored", restored_url)
        try:
            assert read_back(restored.base, conversation_id, auth) == original
        finally:
            restored.stop()
    assert [content for role, content in original if role == "user"] == QUESTIONS


def libpq(url: str) -> str:
    """A SQLAlchemy URL as pg_dump and pg_restore take it (postgresql://, no driver)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
