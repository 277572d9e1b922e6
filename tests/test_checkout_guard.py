"""The checkout guard: a pytest run (of a small project in tmp_path) fails when a test writes into its checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import PROJECT_ROOT


def run_pytest(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest with the guard plugin on `project`: no SUPPORTBOT_ settings of ours, no third-party plugins."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("SUPPORTBOT_") and k not in {"CI", "PYTHONDONTWRITEBYTECODE"}}
    clean.update(PYTHONPATH=str(PROJECT_ROOT), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", **env)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.checkout_guard", "-q"],
                          cwd=project, env=clean, capture_output=True, text=True, timeout=120)


def checkout(tmp_path: Path, test_source: str) -> Path:
    """A small checkout: a committed-looking file, an ignored cache directory, and one test module."""
    project = tmp_path / "checkout"
    (project / "docs").mkdir(parents=True)
    (project / "docs" / "report.md").write_text("# Report\n", encoding="utf-8")
    (project / "bench" / "work").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # pins the rootdir to the checkout
    (project / "test_it.py").write_text("from pathlib import Path\n\nHERE = Path(__file__).parent\n\n"
                                        + test_source, encoding="utf-8")
    return project


@pytest.mark.parametrize(("test_source", "reported"), [
    ("def test_x():\n    (HERE / 'data').mkdir()\n    (HERE / 'data' / 'secret_key').write_text('k')\n",
     ["created  data/", "created  data/secret_key"]),
    ("def test_x():\n    (HERE / 'docs' / 'report.md').write_text('# Report, rows dropped\\n')\n",
     ["modified docs/report.md"]),
    ("def test_x():\n    (HERE / 'docs' / 'report.md').unlink()\n", ["deleted  docs/report.md"]),
    ("(HERE / 'fuzz.db').write_text('at import')\n\ndef test_x():\n    pass\n", ["created  fuzz.db"]),
], ids=["new-untracked-files", "tracked-file-rewritten", "file-deleted", "written-at-collection"])
def test_run_fails_and_names_the_files_a_test_wrote_into_the_checkout(
    tmp_path: Path, test_source: str, reported: list[str]
) -> None:
    result = run_pytest(checkout(tmp_path, test_source))

    assert result.returncode == 1, result.stdout
    assert "the test run changed files inside the checkout" in result.stdout
    listed = [line.strip() for line in result.stdout.splitlines()]
    assert [line for line in listed if line.startswith(("created ", "modified ", "deleted "))] == reported


def test_run_passes_when_tests_write_only_to_temporary_and_cache_directories(tmp_path: Path) -> None:
    source = ("def test_x(tmp_path):\n    (tmp_path / 'out.db').write_text('ok')\n"
              "    (HERE / 'bench' / 'work' / 'scratch.json').write_text('{}')\n")
    project = checkout(tmp_path, source)

    result = run_pytest(project)

    assert result.returncode == 0, result.stdout
    assert (project / ".pytest_cache").is_dir() and (project / "__pycache__").is_dir(), "caches were written"


def test_guard_can_be_switched_off_for_a_run_while_someone_edits_files(tmp_path: Path) -> None:
    project = checkout(tmp_path, "def test_x():\n    (HERE / 'docs' / 'report.md').write_text('edited')\n")

    result = run_pytest(project, SUPPORTBOT_CHECKOUT_GUARD="off")

    assert result.returncode == 0, result.stdout
