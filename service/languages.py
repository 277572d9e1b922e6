"""Language files: one editable YAML file per language with its fixed texts and its escalation rules.

`knowledge/languages/<code>.yaml` (see knowledge/languages/de.yaml) names the language, holds the texts a
visitor may see in it, and the phrases that hand a conversation over: asking for a person, saying the
answer did not help, and the policy topics of knowledge/policies.yaml. Adding a language is adding a file.
Rules match the message lower-cased with accents removed, so patterns are stripped of accents too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError
from .policies import PolicyRule, yaml_line, yaml_patterns, yaml_text
from .textnorm import strip_accents
from .watched import WatchedFiles

LANGUAGES_FOLDER = "languages"
TEXT_KEYS = (
    "handoff", "escalated_ack", "model_unavailable", "budget", "leak", "interrupted", "no_answer", "wrong_language",
    "action_sign_in", "action_failed", "action_confirm", "action_confirm_label", "action_cancel_label",
)
_CODE = re.compile(r"^[a-z]{2,3}$")
_TOP_KEYS = {"language", "name", "english_name", "texts", "human_request", "failure", "policies"}
_RULE_KEYS = {"match", "unless"}


@dataclass(frozen=True, eq=False)
class LanguageRules:
    """What the escalation layer runs for one language: a person asked for, "did not help", policy topics.

    Compared and hashed by identity: the engine caches its word lists per set of rules, and one file's
    rules stay the same object until the file changes.
    """

    code: str
    human_request: PolicyRule | None = None
    failure: PolicyRule | None = None
    policies: tuple[PolicyRule, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the file has no rules (texts only)."""
        return self.human_request is None and self.failure is None and not self.policies


@dataclass(frozen=True)
class LanguageFile:
    """One parsed language file."""

    code: str
    name: str
    english_name: str
    texts: Mapping[str, str] = field(default_factory=dict)
    rules: LanguageRules = field(default_factory=lambda: LanguageRules(""))


def _mapping(node: yaml.Node, source: str, what: str, allowed: Collection[str] | None) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(source, yaml_line(node), f"'{what}' must be a mapping")
    fields: dict[str, yaml.Node] = {}
    for key, value in node.value:
        name = yaml_text(key, source, "a key")
        if allowed is not None and name not in allowed:
            raise ConfigError(source, yaml_line(key), f"unknown key {name!r} in '{what}' (allowed: "
                                                  f"{', '.join(sorted(allowed))})")
        if name in fields:
            raise ConfigError(source, yaml_line(key), f"{name!r} is given twice in '{what}'")
        fields[name] = value
    return fields


_ESCAPE_OR_TEXT = re.compile(r"\\.|[^\\]+", re.DOTALL)


def as_read(pattern: str) -> str:
    """A pattern as the folded text reads: accents removed, letters lower-cased (not escapes: \\S stays \\S).

    The folded message is lower-case already, so the expressions need no IGNORECASE, which halves their cost.
    """
    return strip_accents("".join(part if part.startswith("\\") else part.lower()
                                 for part in _ESCAPE_OR_TEXT.findall(pattern)))


def _patterns(node: yaml.Node | None, source: str, what: str) -> tuple[re.Pattern[str], ...]:
    # The folded message is lower-case already: no IGNORECASE, which halves the expressions' cost.
    return yaml_patterns(node, source, what, prepare=as_read, flags=0)


def _rule(node: yaml.Node, source: str, name: str, description: str) -> PolicyRule:
    fields = _mapping(node, source, name, _RULE_KEYS)
    if "match" not in fields:
        raise ConfigError(source, yaml_line(node), f"'{name}' needs a 'match' list")
    match = _patterns(fields["match"], source, f"{name}.match")
    if not match:
        raise ConfigError(source, yaml_line(fields["match"]), f"'{name}.match' has no regular expressions")
    return PolicyRule(name, description, match, _patterns(fields.get("unless"), source, f"{name}.unless"))


def _policies(node: yaml.Node, source: str, code: str, known: Collection[str] | None) -> tuple[PolicyRule, ...]:
    rules = []
    fields = _mapping(node, source, "policies", None)
    assert isinstance(node, yaml.MappingNode)  # (checked by _mapping)
    keys = {str(key.value): key for key, _ in node.value}
    for name, rule_node in fields.items():
        if known is not None and name not in known:
            raise ConfigError(source, yaml_line(keys[name]), f"policy {name!r} is not a rule of policies.yaml "
                                                         f"({', '.join(sorted(known)) or 'none'})")
        rules.append(_rule(rule_node, source, name, f"{name} ({code})"))
    return tuple(rules)


def _texts(node: yaml.Node, source: str) -> dict[str, str]:
    return {key: yaml_text(value, source, f"texts.{key}")
            for key, value in _mapping(node, source, "texts", TEXT_KEYS).items()}


def parse_language_text(text: str, source: str, code: str, known_policies: Collection[str] | None = None
                        ) -> LanguageFile:
    """Parse one language file named `<code>.yaml`; ConfigError names the line of the first problem."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ConfigError(source, mark.line + 1 if mark else None, f"not valid YAML: {error}") from None
    if root is None:
        raise ConfigError(source, None, "empty file: expected 'language:', 'name:' and 'english_name:'")
    top = _mapping(root, source, "the file", _TOP_KEYS)
    for required in ("language", "name", "english_name"):
        if required not in top:
            raise ConfigError(source, yaml_line(root), f"'{required}:' is missing")
    language = yaml_text(top["language"], source, "language")
    if language != code:
        raise ConfigError(source, yaml_line(top["language"]),
                          f"language {language!r} must equal the file name ({code})")
    rules = LanguageRules(
        code,
        _rule(top["human_request"], source, "human_request", f"asked for a person ({code})")
        if "human_request" in top else None,
        _rule(top["failure"], source, "failure", f"said it did not help ({code})") if "failure" in top else None,
        _policies(top["policies"], source, code, known_policies) if "policies" in top else (),
    )
    return LanguageFile(code, yaml_text(top["name"], source, "name"),
                        yaml_text(top["english_name"], source, "english_name"),
                        _texts(top["texts"], source) if "texts" in top else {}, rules)


def parse_language_file(path: Path, known_policies: Collection[str] | None = None) -> LanguageFile:
    """Read and parse one language file; its code is the file name's stem."""
    if not _CODE.match(path.stem):
        raise ConfigError(str(path), None, "a language file is named by its ISO 639-1 code, like de.yaml")
    return parse_language_text(path.read_text(encoding="utf-8"), str(path), path.stem, known_policies)


class LanguageStore:
    """The language files of the knowledge folder, re-read on change; a broken edit keeps the last good file."""

    def __init__(self, knowledge_dir: Path, interval: float = 1.0,
                 policy_names: Callable[[], Collection[str]] | None = None) -> None:
        self._policy_names = policy_names
        self._files = WatchedFiles(root=knowledge_dir / LANGUAGES_FOLDER, pattern="*.yaml", parse=self._parse,
                                   interval=interval)

    def _parse(self, path: Path) -> LanguageFile:
        known = self._policy_names() if self._policy_names is not None else None
        return parse_language_file(path, known or None)

    def languages(self) -> dict[str, LanguageFile]:
        """Every valid language file, by code."""
        return {language.code: language for language in self._files.current().items.values()}

    def text(self, code: str, key: str) -> str | None:
        """The language's own text for `key`, or None (the caller falls back to English)."""
        language = self.languages().get(code)
        return language.texts.get(key) if language is not None else None

    def rules(self, codes: Collection[str]) -> tuple[LanguageRules, ...]:
        """The escalation rules of the languages `codes` (configured ones) that have any."""
        languages = self.languages()
        return tuple(languages[code].rules for code in codes if code in languages and not languages[code].rules.empty)

    def errors(self) -> tuple[ConfigError, ...]:
        """Problems in the language files at the last look."""
        return self._files.current().errors
