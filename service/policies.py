"""Policy rules: topics that always go to a human, kept in an editable YAML file next to the knowledge."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import ConfigError
from .watched import WatchedFiles

POLICY_FILE = "policies.yaml"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class PolicyRule:
    """One always-escalate topic: recorded as `policy:<name>`."""

    name: str
    description: str
    match: tuple[re.Pattern[str], ...]
    unless: tuple[re.Pattern[str], ...]

    def matches(self, text: str) -> str | None:
        """The matched phrase when the rule fires on (normalized) `text`, else None."""
        for pattern in self.match:
            found = pattern.search(text)
            if found and not any(exclusion.search(text) for exclusion in self.unless):
                return found.group(0)
        return None


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _scalar(node: yaml.Node, source: str, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        raise ConfigError(source, _line(node), f"{what} must be a non-empty text")
    return str(node.value)


def _patterns(node: yaml.Node | None, source: str, what: str) -> tuple[re.Pattern[str], ...]:
    if node is None:
        return ()
    if not isinstance(node, yaml.SequenceNode):
        raise ConfigError(source, _line(node), f"'{what}' must be a list of regular expressions")
    compiled = []
    for item in node.value:
        text = _scalar(item, source, f"an entry of '{what}'")
        try:
            compiled.append(re.compile(text, re.IGNORECASE))
        except re.error as error:
            raise ConfigError(source, _line(item), f"invalid regular expression {text!r}: {error}") from None
    return tuple(compiled)


def _rule(node: yaml.Node, source: str) -> PolicyRule:
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(source, _line(node), "each rule must have name, description, match and optional unless")
    fields = {_scalar(k, source, "a key"): v for k, v in node.value}
    unknown = set(fields) - {"name", "description", "match", "unless"}
    if unknown:
        raise ConfigError(source, _line(node), f"unknown rule field(s): {', '.join(sorted(unknown))}")
    if "name" not in fields or "match" not in fields:
        raise ConfigError(source, _line(node), "a rule needs 'name' and 'match'")
    name = _scalar(fields["name"], source, "name")
    if not _NAME.match(name):
        raise ConfigError(source, _line(fields["name"]), f"rule name {name!r}: use lower-case letters, digits, - or _")
    match = _patterns(fields["match"], source, "match")
    if not match:
        raise ConfigError(source, _line(fields["match"]), f"rule {name!r} has no match expressions")
    description = _scalar(fields["description"], source, "description") if "description" in fields else ""
    return PolicyRule(name, description, match, _patterns(fields.get("unless"), source, "unless"))


def parse_policy_text(text: str, source: str) -> tuple[PolicyRule, ...]:
    """Parse a policy file; ConfigError names the line of the first problem."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ConfigError(source, mark.line + 1 if mark else None, f"not valid YAML: {error}") from None
    if root is None:
        return ()
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(source, _line(root), "expected a top-level 'rules:' list")
    top = {_scalar(k, source, "a key"): v for k, v in root.value}
    rules_node = top.get("rules")
    if rules_node is None or not isinstance(rules_node, yaml.SequenceNode):
        raise ConfigError(source, _line(root), "expected a top-level 'rules:' list")
    rules = tuple(_rule(item, source) for item in rules_node.value)
    names = [rule.name for rule in rules]
    for duplicate in {n for n in names if names.count(n) > 1}:
        raise ConfigError(source, None, f"rule name {duplicate!r} is used twice")
    return rules


def parse_policy_file(path: Path) -> tuple[PolicyRule, ...]:
    """Read and parse one policy file."""
    return parse_policy_text(path.read_text(encoding="utf-8"), str(path))


class PolicyStore:
    """The policy file, re-read when it changes; a broken edit keeps the last good rules."""

    def __init__(self, knowledge_dir: Path, interval: float = 1.0) -> None:
        self._files = WatchedFiles(root=knowledge_dir, pattern=POLICY_FILE, parse=parse_policy_file,
                                   interval=interval)

    def rules(self) -> tuple[PolicyRule, ...]:
        """The rules in force."""
        loaded = self._files.current()
        return next(iter(loaded.items.values()), ())

    def errors(self) -> tuple[ConfigError, ...]:
        """Problems in the policy file at the last look."""
        return self._files.current().errors
