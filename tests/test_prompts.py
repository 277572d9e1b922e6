"""Prompt versions: labels, assembly with knowledge, hot reload that never serves a broken file."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from service.config import PROJECT_ROOT
from service.errors import ConfigError
from service.knowledge import KnowledgeStore
from service.prompts import PromptRegistry, parse_prompt_file


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(PROJECT_ROOT / "prompts", target)
    return target


def _touch(path: Path, stamp: int) -> None:
    os.utime(path, ns=(stamp, stamp))


def test_labels_and_versions_resolve(prompts_dir: Path) -> None:
    registry = PromptRegistry(prompts_dir, interval=0)

    assert registry.resolve("support@production").ref == "support@v2"
    assert registry.resolve("support").ref == "support@v2"
    assert registry.resolve("support@v1").ref == "support@v1"
    assert registry.resolve("support@baseline").ref == "support@v1"
    with pytest.raises(LookupError, match="no version or label 'v9'"):
        registry.resolve("support@v9")
    with pytest.raises(LookupError, match="no prompt named 'sales'"):
        registry.resolve("sales@production")


def test_front_matter_is_read(prompts_dir: Path) -> None:
    version = PromptRegistry(prompts_dir, interval=0).resolve("support@v1")

    assert version.max_tokens == 400 and version.temperature == 0.2
    assert "classic seed" in version.description


def test_classic_seed_prompt_renders_with_company_product_and_known_issues(prompts_dir: Path) -> None:
    registry = PromptRegistry(prompts_dir, interval=0)
    knowledge = KnowledgeStore(PROJECT_ROOT / "knowledge", interval=0).current()

    rendered = registry.assemble(registry.resolve("support@v1"), knowledge, knowledge.issues[:2], complete=False,
                                 company="Initech", product="Reports")

    assert rendered.text.startswith("You are a helpful support agent for Initech Reports.")
    assert "Known issues and solutions:" in rendered.text
    assert f"- {knowledge.issues[0].title}: " in rendered.text
    assert rendered.text.rstrip().endswith("Answer questions accurately but briefly. Escalate to human if complex.")
    assert rendered.sha256 == hashlib.sha256(rendered.text.encode()).hexdigest()


def test_label_change_takes_effect_without_restart(prompts_dir: Path) -> None:
    registry = PromptRegistry(prompts_dir, interval=0)
    assert registry.resolve("support@production").version == "v2"

    labels = prompts_dir / "support" / "labels.yaml"
    labels.write_text("production: v1\n")
    _touch(labels, 10**9)

    assert registry.resolve("support@production").version == "v1"


def test_broken_template_keeps_last_good_version(prompts_dir: Path) -> None:
    registry = PromptRegistry(prompts_dir, interval=0)
    path = prompts_dir / "support" / "v2.md.j2"
    good = registry.resolve("support@v2")

    path.write_text(path.read_text() + "\n{% for x in %}\n")
    _touch(path, 10**9)

    assert registry.resolve("support@v2") is good
    (error,) = registry.errors()
    assert error.path == str(path) and error.line is not None and "template syntax" in error.reason


def test_unknown_variable_is_rejected_before_it_can_serve(prompts_dir: Path) -> None:
    path = prompts_dir / "support" / "v3.md.j2"
    path.write_text("---\ndescription: typo\n---\nHello {{ compnay }}\n")

    with pytest.raises(ConfigError) as raised:
        parse_prompt_file(path)

    assert "compnay" in raised.value.reason
    registry = PromptRegistry(prompts_dir, interval=0)
    with pytest.raises(LookupError):
        registry.resolve("support@v3")


@pytest.mark.parametrize(("front", "reason"), [
    ("---\ncolour: red\n---\n", "unknown front matter field 'colour'"),
    ("---\nmax_tokens: lots\n---\n", "wrong type"),
    ("---\ndescription: [unclosed\n---\n", "not valid YAML"),
    ("---\ndescription: x\n", "never closed"),
])
def test_front_matter_errors(tmp_path: Path, front: str, reason: str) -> None:
    path = tmp_path / "support" / "v1.md.j2"
    path.parent.mkdir()
    path.write_text(front + "Hello {{ company }}\n")

    with pytest.raises(ConfigError, match=reason):
        parse_prompt_file(path)


def test_syntax_error_line_counts_the_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "support" / "v1.md.j2"
    path.parent.mkdir()
    path.write_text("---\ndescription: x\n---\nline one\n{% if %}\n")

    with pytest.raises(ConfigError) as raised:
        parse_prompt_file(path)

    assert raised.value.line == 5


def test_label_pointing_to_a_missing_version_is_reported(prompts_dir: Path) -> None:
    (prompts_dir / "support" / "labels.yaml").write_text("production: v2\nstaging: v7\n")

    errors = PromptRegistry(prompts_dir, interval=0).errors()

    assert any("'staging' points to missing version 'v7'" in e.reason for e in errors)


def test_assembled_prompts_are_cached_per_inputs(prompts_dir: Path) -> None:
    registry = PromptRegistry(prompts_dir, interval=0)
    knowledge = KnowledgeStore(PROJECT_ROOT / "knowledge", interval=0).current()
    version = registry.resolve("support@v2")

    one = registry.assemble(version, knowledge, knowledge.issues[:3], complete=False, company="A", product="B")
    two = registry.assemble(version, knowledge, knowledge.issues[:3], complete=False, company="A", product="B")
    other = registry.assemble(version, knowledge, knowledge.issues[:4], complete=False, company="A", product="B")

    assert one is two
    assert other.sha256 != one.sha256
