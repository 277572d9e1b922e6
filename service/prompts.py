"""Versioned system prompts: Jinja2 files with front matter, labels, and assembly with the knowledge."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from .errors import ConfigError
from .guard import LeakGuard, canary_line
from .knowledge import KnowledgeBase, KnownIssue
from .watched import WatchedFiles

TEMPLATE_SUFFIX = ".md.j2"
LABELS_FILE = "labels.yaml"
FRONT_MATTER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "description": str, "model": str, "temperature": (int, float), "max_tokens": int,
}
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SAMPLE_CONTEXT: dict[str, Any] = {
    "company": "Example",
    "product": "Product",
    "known_issues": [{"id": "sample", "title": "Sample", "keywords": ["sample"], "solution": "Do this.",
                      "escalate": False}],
    "knowledge_complete": True,
    "language": "English",
}
_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False
)


def estimate_tokens(text: str) -> int:
    """Rough token count for English text: one token per four characters (OpenAI's rule of thumb).

    Used only where the API reports no usage (prompt display, offline replies); logged usage always
    comes from the API.
    """
    return max(1, (len(text) + 3) // 4) if text else 0


@dataclass(frozen=True)
class PromptVersion:
    """One prompt file: `prompts/<name>/<version>.md.j2`."""

    name: str
    version: str
    path: Path
    source: str
    template: jinja2.Template
    description: str = ""
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class RenderedPrompt:
    """The exact system prompt sent to the model, addressed by its sha256."""

    name: str
    version: str
    text: str
    sha256: str
    known_issue_ids: tuple[str, ...]
    knowledge_complete: bool

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def _split_front_matter(text: str, source: str) -> tuple[dict[str, Any], str, int]:
    if not text.startswith("---"):
        return {}, text, 0
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            try:
                meta = yaml.safe_load("".join(lines[1:i])) or {}
            except yaml.YAMLError as error:
                mark = getattr(error, "problem_mark", None)
                line_no = mark.line + 2 if mark is not None else 1
                raise ConfigError(source, line_no, f"front matter is not valid YAML: {error}") from None
            if not isinstance(meta, dict):
                raise ConfigError(source, 2, "front matter must be 'key: value' lines")
            return meta, "".join(lines[i + 1 :]), i + 1
    raise ConfigError(source, 1, "front matter opened with '---' is never closed")


def _check_front_matter(meta: dict[str, Any], source: str) -> None:
    for key, value in meta.items():
        expected = FRONT_MATTER_FIELDS.get(key)
        if expected is None:
            allowed = ", ".join(sorted(FRONT_MATTER_FIELDS))
            raise ConfigError(source, 2, f"unknown front matter field '{key}' (allowed: {allowed})")
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ConfigError(source, 2, f"front matter field '{key}' has the wrong type: {value!r}")
    if "max_tokens" in meta and meta["max_tokens"] < 1:
        raise ConfigError(source, 2, "max_tokens must be at least 1")


def parse_prompt_file(path: Path) -> PromptVersion:
    """Parse and compile one prompt version; raise ConfigError with file and line when broken."""
    source = str(path)
    text = path.read_text(encoding="utf-8")
    meta, body, offset = _split_front_matter(text, source)
    _check_front_matter(meta, source)
    version = path.name[: -len(TEMPLATE_SUFFIX)]
    if not _VERSION.match(version):
        raise ConfigError(source, None, f"'{version}' is not a valid version name (letters, digits, . _ -)")
    try:
        template = _ENV.from_string(body)
    except jinja2.TemplateSyntaxError as error:
        raise ConfigError(source, (error.lineno or 0) + offset, f"template syntax: {error.message}") from None
    prompt = PromptVersion(
        name=path.parent.name,
        version=version,
        path=path,
        source=body,
        template=template,
        description=str(meta.get("description", "")),
        model=meta.get("model"),
        temperature=float(meta["temperature"]) if "temperature" in meta else None,
        max_tokens=meta.get("max_tokens"),
    )
    try:
        # A trial render catches unknown variables now, so a bad edit never replaces a good version.
        template.render(**SAMPLE_CONTEXT)
    except jinja2.TemplateError as error:
        raise _render_error(prompt, error) from None
    return prompt


@dataclass(frozen=True)
class Split:
    """A label serving several versions by weight, e.g. `production: {v2: 90, v3: 10}`; the first is control."""

    weights: tuple[tuple[str, int], ...]  # (version, weight), in the file's order

    @property
    def control(self) -> str:
        return self.weights[0][0]

    @property
    def total(self) -> int:
        return sum(weight for _, weight in self.weights)

    def pick(self, conversation_id: str, label: str) -> str:
        """The version a conversation is assigned: the same on every replica, from its id and the label."""
        digest = hashlib.sha256(f"{conversation_id}:{label}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") % self.total
        # Sorted by version, so reordering the file's lines moves no conversation to another arm.
        for version, weight in sorted(self.weights):
            if point < weight:
                return version
            point -= weight
        raise AssertionError("unreachable: point < total")

    def describe(self) -> str:
        """`v2 90 % / v3 10 %`."""
        return " / ".join(f"{version} {weight * 100 / self.total:g} %" for version, weight in self.weights)


Label = str | Split
StoppedArms = frozenset[tuple[str, str, str]]  # (prompt, label, version) of arms taken out of traffic


def parse_labels_file(path: Path) -> dict[str, Label]:
    """Parse `labels.yaml`: label -> version (`production: v2`) or a split (`production: {v2: 90, v3: 10}`)."""
    source = str(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ConfigError(source, mark.line + 1 if mark else None, f"not valid YAML: {error}") from None
    if not data:
        return {}
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise ConfigError(source, 1, "labels must be 'label: version' lines, e.g. 'production: v2'")
    lines = {key.value: (key.start_mark.line + 1, value) for key, value in root.value}
    labels: dict[str, Label] = {}
    for label, target in data.items():
        line, node = lines.get(str(label), (1, None))
        if not isinstance(label, str):
            raise ConfigError(source, line, f"label {label!r} must be a name, e.g. 'production'")
        if isinstance(target, dict):
            labels[label] = _parse_split(source, label, target, node)
        elif isinstance(target, str | int | float) and not isinstance(target, bool):
            labels[label] = str(target)
        else:
            raise ConfigError(source, line, f"label '{label}' must name a version ('{label}: v2') "
                                            f"or split traffic ('{label}: {{v2: 90, v3: 10}}')")
    return labels


def _parse_split(source: str, label: str, target: dict[Any, Any], node: yaml.Node | None) -> Split:
    lines = {key.value: key.start_mark.line + 1 for key, _ in node.value} \
        if isinstance(node, yaml.MappingNode) else {}
    if not target:
        line = node.start_mark.line + 1 if node is not None else None
        raise ConfigError(source, line, f"label '{label}' splits traffic over no versions")
    weights = []
    for version, weight in target.items():
        line = lines.get(str(version))
        if not isinstance(version, str | int | float) or isinstance(version, bool):
            raise ConfigError(source, line, f"label '{label}': {version!r} is not a version name")
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
            raise ConfigError(source, line, f"label '{label}': the weight of '{version}' must be a positive "
                                            f"whole number, not {weight!r}")
        weights.append((str(version), weight))
    return Split(tuple(weights))


def _render_error(version: PromptVersion, error: Exception) -> ConfigError:
    line = getattr(error, "lineno", None)
    return ConfigError(str(version.path), line, f"cannot render: {error}")


class PromptRegistry:
    """All prompt versions and labels under a directory, re-read when files change."""

    def __init__(self, root: Path, interval: float = 1.0, cache_size: int = 256) -> None:
        self.root = root
        self._templates = WatchedFiles(root=root, pattern=f"*/*{TEMPLATE_SUFFIX}", parse=parse_prompt_file,
                                       interval=interval)
        self._labels = WatchedFiles(root=root, pattern=f"*/{LABELS_FILE}", parse=parse_labels_file,
                                    interval=interval)
        self._cache: OrderedDict[tuple[Any, ...], RenderedPrompt] = OrderedDict()
        self._cache_size = cache_size
        self._guards: dict[tuple[Any, ...], LeakGuard] = {}
        self._lock = threading.Lock()

    def versions(self) -> dict[str, dict[str, PromptVersion]]:
        """name -> version -> PromptVersion, as the files are now."""
        result: dict[str, dict[str, PromptVersion]] = {}
        for version in self._templates.current().items.values():
            result.setdefault(version.name, {})[version.version] = version
        return result

    def labels(self) -> dict[str, dict[str, str]]:
        """name -> label -> version; a split label names its control version."""
        return {name: {label: target.control if isinstance(target, Split) else target
                       for label, target in labels.items()}
                for name, labels in self._all_labels().items()}

    def splits(self) -> dict[str, dict[str, Split]]:
        """name -> label -> split, for the labels that split traffic."""
        return {name: {label: target for label, target in labels.items() if isinstance(target, Split)}
                for name, labels in self._all_labels().items()}

    def _all_labels(self) -> dict[str, dict[str, Label]]:
        return {path.parent.name: labels for path, labels in self._labels.current().items.items()}

    def errors(self) -> list[ConfigError]:
        """Problems in prompt files and labels at the last look, plus labels that point nowhere."""
        errors = list(self._templates.current().errors) + list(self._labels.current().errors)
        versions = self.versions()
        for path, labels in self._labels.current().items.items():
            for label, target in labels.items():
                for wanted in [v for v, _ in target.weights] if isinstance(target, Split) else [target]:
                    if wanted not in versions.get(path.parent.name, {}):
                        errors.append(ConfigError(str(path), None,
                                                  f"label '{label}' points to missing version '{wanted}'"))
        return errors

    def resolve(self, spec: str) -> PromptVersion:
        """`support@production`, `support@v2` or `support` (its `production` label) -> a version.

        A label that splits traffic resolves to its control version; turns serve the conversation's arm.
        """
        name, _, wanted = spec.partition("@")
        wanted = wanted or "production"
        versions = self.versions().get(name)
        if not versions:
            raise LookupError(f"no prompt named '{name}' in {self.root}")
        target = self.labels().get(name, {}).get(wanted, wanted)
        if target not in versions:
            raise LookupError(f"prompt '{name}' has no version or label '{wanted}'")
        return versions[target]

    def arm(self, spec: str, conversation_id: str, stopped: StoppedArms = frozenset()) -> str | None:
        """The arm (`name@version`) a new conversation is assigned, when `spec`'s label splits traffic.

        An arm whose version is missing, or that was `stopped`, gives way to the label's control version.
        """
        name, _, wanted = spec.partition("@")
        label = wanted or "production"
        split = self.splits().get(name, {}).get(label)
        if split is None:
            return None
        picked = split.pick(conversation_id, label)
        if (name, label, picked) in stopped:
            picked = split.control
        if picked in self.versions().get(name, {}):
            return f"{name}@{picked}"
        try:
            return self.resolve(spec).ref
        except LookupError:
            return None

    def exact(self, ref: str) -> PromptVersion:
        """The version `name@version` names, labels aside; LookupError when it no longer exists."""
        name, _, version = ref.partition("@")
        found = self.versions().get(name, {}).get(version)
        if found is None:
            raise LookupError(f"prompt '{name}' has no version '{version}'")
        return found

    def render(self, version: PromptVersion, context: dict[str, Any]) -> str:
        """Render a version with the given variables (StrictUndefined: a missing one is an error)."""
        try:
            return version.template.render(**context).strip() + "\n"
        except jinja2.TemplateError as error:
            raise _render_error(version, error) from None

    def assemble(
        self, version: PromptVersion, knowledge: KnowledgeBase, issues: tuple[KnownIssue, ...],
        *, complete: bool, company: str, product: str, canary: str | None = None, language: str = "English",
    ) -> RenderedPrompt:
        """The system prompt for `version` with `issues` injected (and the canary lines), cached per inputs.

        `language` is the visitor's, by its English name ("German"): the template's `language` variable.
        """
        key = (version.path, id(version), knowledge.revision, tuple(i.id for i in issues), company, product, canary,
               language)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        text = self.render(version, {
            "company": company,
            "product": product,
            "known_issues": [i.as_context() for i in issues],
            "knowledge_complete": complete,
            "language": language,
        })
        if canary:
            # First as well as last: a model echoing its prompt from the top trips the guard before any of it.
            text = f"{canary_line(canary)}\n{text}{canary_line(canary)}\n"
        rendered = RenderedPrompt(
            name=version.name, version=version.version, text=text,
            sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            known_issue_ids=tuple(i.id for i in issues), knowledge_complete=complete,
        )
        with self._lock:
            self._cache[key] = rendered
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return rendered

    def guard(self, version: PromptVersion, *, company: str, product: str, canary: str) -> LeakGuard:
        """The leak guard of a version: its instruction text (rendered without known issues) and the canary."""
        key = ("guard", version.path, id(version), company, product, canary)
        with self._lock:
            cached = self._guards.get(key)
        if cached is None:
            instructions = self.render(version, {"company": company, "product": product, "known_issues": [],
                                                 "knowledge_complete": True, "language": "English"})
            cached = LeakGuard.for_instructions(canary, [instructions])
            with self._lock:
                self._guards[key] = cached
        return cached
