"""Policy rules: topics that always go to a human, kept in an editable YAML file next to the knowledge."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError
from .prefilter import Needles
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
    # `match` with the literals a match needs, to skip the searches that cannot match (service/prefilter.py)
    needles: Needles = field(init=False, repr=False, compare=False, hash=False)
    _hash: int = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "needles", Needles.of(self.match))
        object.__setattr__(self, "_hash", hash((self.name, self.description, self.match, self.unless)))

    def __hash__(self) -> int:
        # Hashed on every message (the engine's caches are keyed by the rules): computed once.
        return self._hash

    def first_match(self, text: str) -> re.Match[str] | None:
        """The first of `match` found in `text` (the exclusions not applied)."""
        return self.needles.first(text)

    def matches(self, text: str) -> str | None:
        """The matched phrase when the rule fires on (normalized) `text`, else None."""
        found = self.first_match(text)
        if found and not any(exclusion.search(text) for exclusion in self.unless):
            return found.group(0)
        return None


def yaml_line(node: yaml.Node) -> int:
    """The 1-based line a YAML node starts on, for errors."""
    return node.start_mark.line + 1


def yaml_text(node: yaml.Node, source: str, what: str) -> str:
    """A non-empty scalar, else a ConfigError naming its line."""
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        raise ConfigError(source, yaml_line(node), f"{what} must be a non-empty text")
    return str(node.value)


def yaml_patterns(
    node: yaml.Node | None, source: str, what: str, *,
    prepare: Callable[[str], str] = str, flags: int = re.IGNORECASE,
) -> tuple[re.Pattern[str], ...]:
    """A YAML list of regular expressions, each `prepare`d and compiled; a bad one is a ConfigError with its line."""
    if node is None:
        return ()
    if not isinstance(node, yaml.SequenceNode):
        raise ConfigError(source, yaml_line(node), f"'{what}' must be a list of regular expressions")
    compiled = []
    for item in node.value:
        text = prepare(yaml_text(item, source, f"an entry of '{what}'"))
        try:
            compiled.append(re.compile(text, flags))
        except re.error as error:
            raise ConfigError(source, yaml_line(item), f"invalid regular expression {text!r}: {error}") from None
    return tuple(compiled)


def _rule(node: yaml.Node, source: str) -> PolicyRule:
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(source, yaml_line(node), "each rule must have name, description, match and optional unless")
    fields = {yaml_text(k, source, "a key"): v for k, v in node.value}
    unknown = set(fields) - {"name", "description", "match", "unless"}
    if unknown:
        raise ConfigError(source, yaml_line(node), f"unknown rule field(s): {', '.join(sorted(unknown))}")
    if "name" not in fields or "match" not in fields:
        raise ConfigError(source, yaml_line(node), "a rule needs 'name' and 'match'")
    name = yaml_text(fields["name"], source, "name")
    if not _NAME.match(name):
        raise ConfigError(source, yaml_line(fields["name"]),
                          f"rule name {name!r}: use lower-case letters, digits, - or _")
    match = yaml_patterns(fields["match"], source, "match")
    if not match:
        raise ConfigError(source, yaml_line(fields["match"]), f"rule {name!r} has no match expressions")
    description = yaml_text(fields["description"], source, "description") if "description" in fields else ""
    return PolicyRule(name, description, match, yaml_patterns(fields.get("unless"), source, "unless"))


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
        raise ConfigError(source, yaml_line(root), "expected a top-level 'rules:' list")
    top = {yaml_text(k, source, "a key"): v for k, v in root.value}
    rules_node = top.get("rules")
    if rules_node is None or not isinstance(rules_node, yaml.SequenceNode):
        raise ConfigError(source, yaml_line(root), "expected a top-level 'rules:' list")
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
