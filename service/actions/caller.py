"""Calling one action: check the model's arguments, build the request from the file, call, trim the answer.

The model controls only argument values. They land in the URL as single percent-encoded path segments (or query
values), or in a JSON body; the scheme, host, port and path template come from the file and are checked again
after the URL is built. Headers come from the file (`${VAR}` read from the environment at call time) plus the
verified user id; nothing the model writes can become a header. The answer is untrusted: size-capped while it
streams, JSON objects only, and only the declared fields are kept. `call` never raises: every failure is an
`ActionOutcome` with a short error that holds no secret and no response text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, urlsplit

import httpx
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from ..models import ActionStatus
from .base import USER_HEADER, ActionOutcome, ActionSpec, PreparedRequest
from .files import PLACEHOLDER, VARIABLE

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
_REDIRECTS = (301, 302, 303, 307, 308)
_FAILED_4XX = (401, 403, 407, 408, 429)  # our side or theirs is misconfigured or overloaded: not the visitor's answer
_QUERY_METHODS = ("GET", "DELETE")
_SHOWN_KEY = 40  # the longest argument name quoted back in an error
_KEY_CHARS = 64  # argument names may be this long even when values are limited to less
_MAX_ERRORS = 3
_LIMITS = {"pattern": "must match the pattern", "minLength": "shorter than the minimum length",
           "maxLength": "longer than the maximum length", "minimum": "must be at least",
           "maximum": "must be at most", "exclusiveMinimum": "must be more than",
           "exclusiveMaximum": "must be less than", "minItems": "needs at least this many items:",
           "maxItems": "allows at most this many items:", "multipleOf": "must be a multiple of",
           "format": "must have the format", "minProperties": "needs at least this many keys:",
           "maxProperties": "allows at most this many keys:"}


class ActionRefused(Exception):
    """The request cannot be built (a missing secret, a value that would leave its segment); `status` says
    whether the model can fix it (INVALID_ARGUMENTS) or not (FAILED)."""

    def __init__(self, status: ActionStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class _Built:
    """The request to send (with secrets) and what may be shown of it (without)."""

    url: httpx.URL
    headers: dict[str, str]
    body: Any
    shown: PreparedRequest


class ActionCaller:
    """Makes action calls over one httpx client (created on first use unless given)."""

    def __init__(self, client: httpx.AsyncClient | None = None, environ: Mapping[str, str] | None = None,
                 max_argument_chars: int = 500) -> None:
        self._client = client
        self._owns_client = client is None
        self._environ = environ
        self.max_argument_chars = max_argument_chars

    def validate(self, spec: ActionSpec, arguments: Any) -> str | None:
        """Why `arguments` do not fit the action's schema (short, names fields, never echoes values), or None."""
        if not isinstance(arguments, dict):
            return "arguments must be a JSON object"
        too_long = _too_long(arguments, self.max_argument_chars, ())
        if too_long is not None:
            return f"{too_long}: longer than {self.max_argument_chars} characters"
        errors = sorted(Draft202012Validator(spec.parameters).iter_errors(arguments),
                        key=lambda error: (list(map(str, error.absolute_path)), error.validator))
        if errors:
            return "; ".join(_describe(error) for error in errors[:_MAX_ERRORS])[:400]
        try:  # checked here too, so a side-effect action is never confirmed with arguments it would refuse
            for name in PLACEHOLDER.findall(spec.request.url):
                _segment(name, arguments.get(name))
        except ActionRefused as refused:
            return refused.reason
        return None

    def prepare(self, spec: ActionSpec, arguments: dict[str, Any], user_id: str | None = None) -> PreparedRequest:
        """The request `call` would make, secrets masked; raises ActionRefused when it cannot be made."""
        return self._build(spec, arguments, user_id).shown

    async def call(self, spec: ActionSpec, arguments: Any, user_id: str | None = None) -> ActionOutcome:
        """Validate, call and trim. Never raises (except cancellation): every failure is an outcome."""
        started = time.monotonic()
        outcome = await self._call(spec, arguments, user_id)
        latency_ms = round((time.monotonic() - started) * 1000)
        outcome = ActionOutcome(status=outcome.status, http_status=outcome.http_status, latency_ms=latency_ms,
                                result=outcome.result, error=outcome.error, request=outcome.request)
        log.debug("action %s: %s (http %s, %d ms)", spec.name, outcome.status.value, outcome.http_status,
                 latency_ms)
        return outcome

    async def aclose(self) -> None:
        """Close the client if this caller made it."""
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def _call(self, spec: ActionSpec, arguments: Any, user_id: str | None) -> ActionOutcome:
        invalid = self.validate(spec, arguments)
        if invalid is not None:
            return ActionOutcome(status=ActionStatus.INVALID_ARGUMENTS, error=invalid)
        try:
            built = self._build(spec, arguments, user_id)
        except ActionRefused as refused:
            return ActionOutcome(status=refused.status, error=refused.reason)
        try:
            async with asyncio.timeout(spec.request.timeout):
                outcome = await self._send(spec, built)
        except ActionRefused as refused:
            outcome = ActionOutcome(status=refused.status, error=refused.reason)
        except (TimeoutError, httpx.TimeoutException):
            outcome = _failed(f"no answer within {spec.request.timeout:g} s")
        except httpx.TransportError as error:
            outcome = _failed(f"could not reach the API ({type(error).__name__})")
        except Exception as error:  # noqa: BLE001 - `call` never raises; the type is enough to look into it
            log.warning("action %s: request failed with %s", spec.name, type(error).__name__)
            outcome = _failed(f"request failed ({type(error).__name__})")
        return ActionOutcome(status=outcome.status, http_status=outcome.http_status, result=outcome.result,
                             error=outcome.error, request=built.shown)

    def _build(self, spec: ActionSpec, arguments: dict[str, Any], user_id: str | None) -> _Built:
        template = spec.request.url
        url = httpx.URL(PLACEHOLDER.sub(lambda m: _segment(m.group(1), arguments.get(m.group(1))), template))
        declared = spec.parameters.get("properties", {})
        rest = {k: v for k, v in arguments.items() if k in declared and f"{{{k}}}" not in template}
        body: Any = None
        if spec.request.method in _QUERY_METHODS:
            url = url.copy_merge_params(_query(rest)) if rest else url
        else:
            body = rest
        _same_origin_and_prefix(url, template)
        headers, shown_headers = self._headers(spec, user_id)
        if body is not None:  # httpx sets it on the request itself
            shown_headers["Content-Type"] = "application/json"
        shown = PreparedRequest(method=spec.request.method, url=str(url), headers=shown_headers, body=body)
        return _Built(url=url, headers=headers, body=body, shown=shown)

    def _headers(self, spec: ActionSpec, user_id: str | None) -> tuple[dict[str, str], dict[str, str]]:
        environ = self._environ if self._environ is not None else os.environ
        headers: dict[str, str] = {}
        shown: dict[str, str] = {}
        if not any(name.lower() == "accept" for name in spec.request.headers):
            headers["Accept"] = shown["Accept"] = "application/json"
        for name, template in spec.request.headers.items():
            for variable in VARIABLE.findall(template):
                if variable not in environ:
                    raise ActionRefused(ActionStatus.FAILED, f"missing environment variable {variable}")
            value = VARIABLE.sub(lambda m: environ[m.group(1)], template)
            if "\r" in value or "\n" in value:
                raise ActionRefused(ActionStatus.FAILED, f"header {name} would span lines (check its variables)")
            headers[name] = value
            shown[name] = VARIABLE.sub("***", template)
        if spec.identity != "none" and user_id:
            if "\r" in user_id or "\n" in user_id:
                raise ActionRefused(ActionStatus.FAILED, "the user id cannot be sent as a header")
            headers[USER_HEADER] = shown[USER_HEADER] = user_id
        elif spec.identity == "required":
            raise ActionRefused(ActionStatus.FAILED, "this action needs a signed-in visitor")
        return headers, shown

    async def _send(self, spec: ActionSpec, built: _Built) -> ActionOutcome:
        client = self._client_now()
        method, url, body = spec.request.method, built.url, built.body
        for _ in range(MAX_REDIRECTS + 1):
            request = client.build_request(method, url, headers=built.headers,
                                           json=body,
                                           timeout=spec.request.timeout)
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    url = _redirect_target(url, response.headers["location"], spec.request.url)
                    if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                        method, body = "GET", None
                    continue
                return await _answer(spec, response)
            finally:
                await response.aclose()
        return _failed(f"more than {MAX_REDIRECTS} redirects")

    def _client_now(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client


def _failed(error: str, http_status: int | None = None) -> ActionOutcome:
    return ActionOutcome(status=ActionStatus.FAILED, http_status=http_status, error=error)


def _segment(name: str, value: Any) -> str:
    """One placeholder's value, percent-encoded so it stays one path segment (or one query value)."""
    text = value if isinstance(value, str) else json.dumps(value)
    if text in ("", ".", ".."):
        raise ActionRefused(ActionStatus.INVALID_ARGUMENTS,
                            f"{name}: must not be empty, '.' or '..'")
    return quote(text, safe="")


def _query(arguments: dict[str, Any]) -> list[tuple[str, str | int | float | bool | None]]:
    params: list[tuple[str, str | int | float | bool | None]] = []
    for key, value in arguments.items():
        for item in value if isinstance(value, list) else [value]:
            params.append((key, item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)))
    return params


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def _template_origin(template: str) -> tuple[str, str, int | None]:
    parts = urlsplit(template)
    return _origin(httpx.URL(f"{parts.scheme}://{parts.netloc}/"))


def _same_origin_and_prefix(url: httpx.URL, template: str) -> None:
    """The built URL keeps the file's scheme, host, port and the path up to the first placeholder."""
    fixed_path = httpx.URL(template.split("{", 1)[0]).raw_path.split(b"?", 1)[0]
    if _origin(url) != _template_origin(template) or not url.raw_path.startswith(fixed_path):
        raise ActionRefused(ActionStatus.INVALID_ARGUMENTS, "the arguments would change where the request goes")


def _redirect_target(current: httpx.URL, location: str, template: str) -> httpx.URL:
    try:
        target = current.join(location)
    except httpx.InvalidURL:
        raise ActionRefused(ActionStatus.FAILED, "redirect to an invalid URL refused") from None
    if _origin(target) != _template_origin(template):
        raise ActionRefused(ActionStatus.FAILED, "redirect to another host refused")
    return target


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes | None:
    """The body, or None as soon as it passes `max_bytes` (it is not read further)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        return None
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body.extend(chunk)
        if len(body) > max_bytes:
            return None
    return bytes(body)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


async def _answer(spec: ActionSpec, response: httpx.Response) -> ActionOutcome:
    code = response.status_code
    if 200 <= code < 300:
        body = await _read_capped(response, spec.max_bytes)
        if body is None:
            return _failed(f"response larger than {spec.max_bytes} bytes", code)
        data = {} if not body.strip() else _json_object(body)
        if data is None:
            return _failed("response is not a JSON object", code)
        return ActionOutcome(status=ActionStatus.OK, http_status=code, result=declared_fields(data, spec.fields))
    if 400 <= code < 500 and code not in _FAILED_4XX:
        body = await _read_capped(response, spec.max_bytes)
        data = _json_object(body) if body else None
        return ActionOutcome(status=ActionStatus.REJECTED, http_status=code, error=f"HTTP {code}",
                             result=declared_fields(data, spec.fields) if data is not None else None)
    return _failed(f"HTTP {code}", code)


def declared_fields(data: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Only the declared fields of `data`, nested as in `data` (`a.b` keeps `{"a": {"b": ...}}`)."""
    kept: dict[str, Any] = {}
    for path in fields:
        parts = path.split(".")
        value: Any = data
        for part in parts:
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            target = kept
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
    return kept


def _too_long(value: Any, limit: int, where: tuple[str, ...]) -> str | None:
    """The path of the first string value longer than `limit` (or key longer than that and _KEY_CHARS)."""
    if isinstance(value, str):
        return _field(where) if len(value) > limit else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and len(key) > max(limit, _KEY_CHARS):
            return _field((*where, key))
        found = _too_long(item, limit, (*where, str(key)))
        if found is not None:
            return found
    return None


def _field(where: Any) -> str:
    parts = [str(part) for part in where]
    text = "/".join(part if len(part) <= _SHOWN_KEY else part[:_SHOWN_KEY] + "…" for part in parts)
    return text or "arguments"


def _describe(error: ValidationError) -> str:
    """One schema error in a few words, naming the field and never quoting the value the model gave."""
    where = _field(error.absolute_path)
    kind, expected = error.validator, cast(Any, error.validator_value)
    instance: Any = error.instance
    schema: Any = error.schema
    if kind == "required":
        missing = [name for name in expected if isinstance(instance, dict) and name not in instance]
        return "; ".join(f"{_field([name])}: required" for name in missing) or f"{where}: required"
    if kind == "additionalProperties":
        allowed = set(schema.get("properties", {}))
        extra = [name for name in instance if name not in allowed][:_MAX_ERRORS]
        return f"unexpected argument(s): {', '.join(_field([name]) for name in extra)}"
    if kind == "type":
        return f"{where}: must be of type {expected if isinstance(expected, str) else ' or '.join(expected)}"
    if kind in ("enum", "const"):
        return f"{where}: must be one of {json.dumps(expected if kind == 'enum' else [expected])[:200]}"
    if kind in _LIMITS:
        return f"{where}: {_LIMITS[kind]} {str(expected)[:100]}"
    return f"{where}: does not match the schema ({kind})"
