"""Action files: one YAML file per action in SUPPORTBOT_ACTIONS_DIR, validated strictly and watched.

A team writes these by hand and the model acts through them, so every mistake is an error naming the file, the
line and the field (an unknown key is a typo, not something to ignore), and nothing the model supplies can
reach the scheme, host or port: those are fixed text in the file.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..errors import ConfigError
from ..watched import WatchedFiles
from .base import IDENTITIES, USER_HEADER, ActionSpec, Identity, RequestSpec

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
RESERVED_NAMES = frozenset({"escalate_to_human"})
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
VARIABLE = re.compile(r"\$\{([^{}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# Headers the service sets itself: a file setting them would forge the user or break the request.
_RESERVED_HEADERS = frozenset({USER_HEADER.lower(), "host", "content-length", "transfer-encoding", "connection"})
_PLACEHOLDER_TYPES = ("string", "integer", "number")
MAX_TIMEOUT = 30.0
MAX_BYTES = 1_000_000
SUFFIXES = (".yaml", ".yml")

_TOP_KEYS = ("name", "description", "parameters", "request", "identity", "side_effects", "response", "confirm")
_REQUEST_KEYS = ("method", "url", "headers", "timeout")
_RESPONSE_KEYS = ("fields", "max_bytes")


class _Lines:
    """The line of each key of the YAML document, for errors that point at the field."""

    def __init__(self, root: yaml.Node | None) -> None:
        self._root = root

    def of(self, *keys: str) -> int | None:
        node = self._root
        line = node.start_mark.line + 1 if node is not None else None
        for key in keys:
            if not isinstance(node, yaml.MappingNode):
                break
            found = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
            if found is None:
                break
            line = found[0].start_mark.line + 1
            node = found[1]
        return line


@dataclass(frozen=True)
class _Source:
    path: str
    lines: _Lines

    def error(self, where: tuple[str, ...], reason: str) -> ConfigError:
        label = ".".join(where)
        return ConfigError(self.path, self.lines.of(*where), f"{label}: {reason}" if label else reason)


def parse_action(path: Path) -> ActionSpec:
    """Read and validate one action file; ConfigError names the file, line and field of the first problem."""
    return parse_action_text(path.read_text(encoding="utf-8"), path)


def parse_action_text(text: str, path: Path) -> ActionSpec:
    """Validate the text of an action file (see `parse_action`)."""
    source_name = str(path)
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ConfigError(source_name, mark.line + 1 if mark else None, f"not valid YAML: {error}") from None
    source = _Source(source_name, _Lines(root))
    if not isinstance(data, dict):
        raise source.error((), "an action file is a mapping with name, description, parameters, request, ...")
    _no_unknown_keys(source, (), data, _TOP_KEYS)
    name = _name(source, data.get("name"))
    description = _text(source, ("description",), data.get("description"))
    parameters = _parameters(source, data.get("parameters", _no_parameters()))
    request = _request(source, data.get("request"), parameters)
    fields, max_bytes = _response(source, data.get("response", {}))
    confirm = data.get("confirm")
    if confirm is not None:
        confirm = _text(source, ("confirm",), confirm)
        _check_confirm(source, confirm, parameters)
    return ActionSpec(
        name=name, description=description, parameters=parameters, request=request,
        identity=_identity(source, data.get("identity", "optional")),
        side_effects=_flag(source, ("side_effects",), data.get("side_effects", False)),
        fields=fields, max_bytes=max_bytes, confirm=confirm, path=path)


def _no_parameters() -> dict[str, Any]:
    return {"type": "object", "properties": {}, "additionalProperties": False}


def header_variables(spec: ActionSpec) -> dict[str, tuple[str, ...]]:
    """Header name -> the `${VAR}` environment variables its value reads."""
    return {name: tuple(VARIABLE.findall(value)) for name, value in spec.request.headers.items()
            if VARIABLE.search(value)}


def url_placeholders(url: str) -> tuple[str, ...]:
    """The `{parameter}` names of a URL template, in order."""
    return tuple(PLACEHOLDER.findall(url))


def _no_unknown_keys(source: _Source, where: tuple[str, ...], data: Mapping[Any, Any], allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            raise source.error((*where, str(key)), f"unknown key (allowed here: {', '.join(allowed)})")


def _text(source: _Source, where: tuple[str, ...], value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise source.error(where, "required, a non-empty text")
    return value.strip()


def _flag(source: _Source, where: tuple[str, ...], value: Any) -> bool:
    if not isinstance(value, bool):
        raise source.error(where, "must be true or false")
    return value


def _name(source: _Source, value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise source.error(("name",), "required: 1 to 64 letters, digits, _ or - (it is the tool's name)")
    if value in RESERVED_NAMES:
        raise source.error(("name",), f"{value!r} is the service's own tool; choose another name")
    return value


def _identity(source: _Source, value: Any) -> Identity:
    if value not in IDENTITIES:
        raise source.error(("identity",), f"must be one of {', '.join(IDENTITIES)}")
    return cast(Identity, value)


def _parameters(source: _Source, value: Any) -> dict[str, Any]:
    where = ("parameters",)
    if not isinstance(value, dict):
        raise source.error(where, "must be a JSON Schema of type object (a mapping)")
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as error:
        at = "/".join(str(part) for part in error.absolute_path)
        raise source.error(where, f"not a valid JSON Schema{f' at {at}' if at else ''}: {error.message}") from None
    if value.get("type") != "object":
        raise source.error(where, "the schema must have 'type: object' (the model supplies named arguments)")
    properties = value.get("properties", {})
    for key in properties:
        if not isinstance(key, str) or not _IDENTIFIER.match(key):
            raise source.error((*where, "properties", str(key)),
                               "parameter names are letters, digits and _ (not starting with a digit)")
    return value


def _request(source: _Source, value: Any, parameters: dict[str, Any]) -> RequestSpec:
    where = ("request",)
    if not isinstance(value, dict):
        raise source.error(where, "required: a mapping with method, url, and optional headers and timeout")
    _no_unknown_keys(source, where, value, _REQUEST_KEYS)
    method = value.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise source.error((*where, "method"), f"must be one of {', '.join(METHODS)}")
    url = _url(source, value.get("url"), parameters)
    return RequestSpec(method=method.upper(), url=url, headers=_headers(source, value.get("headers", {})),
                       timeout=_timeout(source, value.get("timeout", 5)))


def _url(source: _Source, value: Any, parameters: dict[str, Any]) -> str:
    where = ("request", "url")
    if not isinstance(value, str) or not value.strip():
        raise source.error(where, "required: the URL to call, like https://api.example.com/orders/{order_id}")
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise source.error(where, "only http:// and https:// URLs are allowed")
    if not parts.netloc or "{" in parts.netloc or "}" in parts.netloc or "{" in parts.scheme:
        raise source.error(where, "the scheme and host are fixed text: placeholders go in the path or query only")
    if "@" in parts.netloc:
        raise source.error(where, "no user:password@ in the URL: put credentials in a header with ${VARIABLE}")
    if parts.fragment or "#" in url:
        raise source.error(where, "no #fragment in the URL")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise source.error(where, "the port is not a number") from None
    properties = parameters.get("properties", {})
    required = set(parameters.get("required", ()))
    for placeholder in url_placeholders(url):
        if not _IDENTIFIER.match(placeholder):
            raise source.error(where, f"{{{placeholder}}} is not a parameter name")
        if placeholder not in properties:
            raise source.error(where, f"{{{placeholder}}} is not a parameter declared under parameters.properties")
        if placeholder not in required:
            raise source.error(where, f"{{{placeholder}}} must be listed in parameters.required")
        if properties[placeholder].get("type") not in _PLACEHOLDER_TYPES:
            raise source.error(where, f"{{{placeholder}}} must be a parameter of type string, integer or number")
    return url


def _headers(source: _Source, value: Any) -> dict[str, str]:
    where = ("request", "headers")
    if not isinstance(value, dict):
        raise source.error(where, "must be a mapping of header name to text")
    headers: dict[str, str] = {}
    for name, text in value.items():
        at = (*where, str(name))
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise source.error(at, "not a valid header name")
        if name.lower() in _RESERVED_HEADERS:
            raise source.error(at, "set by the service itself; remove it")
        if not isinstance(text, str):
            raise source.error(at, "the value must be text (quote it)")
        if "\r" in text or "\n" in text:
            raise source.error(at, "the value must be one line")
        for variable in VARIABLE.findall(text):
            if not _IDENTIFIER.match(variable):
                raise source.error(at, f"${{{variable}}} is not an environment variable name")
        headers[name] = text
    return headers


def _timeout(source: _Source, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_TIMEOUT:
        raise source.error(("request", "timeout"), f"seconds, more than 0 and at most {MAX_TIMEOUT:g}")
    return float(value)


def _response(source: _Source, value: Any) -> tuple[tuple[str, ...], int]:
    where = ("response",)
    if not isinstance(value, dict):
        raise source.error(where, "must be a mapping with fields and optional max_bytes")
    _no_unknown_keys(source, where, value, _RESPONSE_KEYS)
    fields = value.get("fields", [])
    if not isinstance(fields, list) or not all(
            isinstance(f, str) and f and all(part for part in f.split(".")) for f in fields):
        raise source.error((*where, "fields"), "a list of field names (a.b reaches into an object)")
    max_bytes = value.get("max_bytes", 4000)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not 1 <= max_bytes <= MAX_BYTES:
        raise source.error((*where, "max_bytes"), f"a whole number from 1 to {MAX_BYTES:_}")
    return tuple(fields), max_bytes


def _check_confirm(source: _Source, confirm: str, parameters: dict[str, Any]) -> None:
    properties = parameters.get("properties", {})
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(confirm) if name is not None]
    except ValueError as error:
        raise source.error(("confirm",), f"not a valid template: {error}") from None
    for name in names:
        if name not in properties:
            raise source.error(("confirm",), f"{{{name}}} is not a parameter declared under parameters.properties")


@dataclass(frozen=True)
class ActionSet:
    """The actions in force at one moment, and the problems of the files that are not."""

    by_name: dict[str, ActionSpec] = field(default_factory=dict)
    errors: tuple[ConfigError, ...] = ()

    def tools(self) -> list[dict[str, Any]]:
        """Every action as an OpenAI tool, in file order."""
        return [spec.as_tool() for spec in self.by_name.values()]

    def get(self, name: str) -> ActionSpec | None:
        """The action called `name`, if there is one."""
        return self.by_name.get(name)


def assemble(specs: Iterable[tuple[Path, ActionSpec]]) -> tuple[dict[str, ActionSpec], list[ConfigError]]:
    """Actions by name in path order; a name already taken by an earlier file is an error of the later file."""
    by_name: dict[str, ActionSpec] = {}
    errors: list[ConfigError] = []
    for path, spec in sorted(specs, key=lambda item: str(item[0])):
        earlier = by_name.get(spec.name)
        if earlier is not None:
            errors.append(ConfigError(str(path), None, f"name: {spec.name!r} is already the name of "
                                                       f"{earlier.path.name if earlier.path else 'another file'}"))
            continue
        by_name[spec.name] = spec
    return by_name, errors


class ActionFiles:
    """The action files under `root` (*.yaml and *.yml), re-read when they change; a broken edit keeps the last
    good version of that file, and a missing directory means no actions."""

    def __init__(self, root: Path, interval: float = 1.0, clock: Callable[[], float] | None = None) -> None:
        self.root = root
        self._watched = [WatchedFiles(root=root, pattern=f"*{suffix}", parse=parse_action, interval=interval,
                                      clock=clock or time.monotonic) for suffix in SUFFIXES]
        self._cache: tuple[tuple[int, ...], ActionSet] | None = None

    def current(self) -> ActionSet:
        """The actions in force now (re-checked at most every `interval` seconds)."""
        loaded = [watched.current() for watched in self._watched]
        generations = tuple(part.generation for part in loaded)
        cached = self._cache
        if cached is not None and cached[0] == generations:
            return cached[1]
        by_name, duplicates = assemble((path, spec) for part in loaded for path, spec in part.items.items())
        errors = tuple(error for part in loaded for error in part.errors) + tuple(duplicates)
        actions = ActionSet(by_name=by_name, errors=errors)
        self._cache = (generations, actions)
        return actions
