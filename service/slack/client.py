"""The Slack Web API client: `chat.postMessage` and `users.info`, with Slack's failures mapped to ours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

# Failures no retry can fix: the token or the channel is wrong until a person changes the settings.
PERMANENT_ERRORS = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "no_permission",
    "missing_scope", "channel_not_found", "not_in_channel", "is_archived", "thread_not_found",
    "invalid_arguments", "msg_too_long", "no_text",
})
DEFAULT_RETRY_AFTER = 30.0  # seconds, when a 429 names none


class SlackError(Exception):
    """A Slack Web API call failed."""


class SlackUnavailable(SlackError):
    """Slack could not be reached or answered with a server error; worth retrying."""


class SlackRateLimited(SlackError):
    """Slack answered 429: the next call must wait `retry_after` seconds."""

    def __init__(self, method: str, retry_after: float) -> None:
        super().__init__(f"{method}: rate limited by Slack, retry after {retry_after:g} s")
        self.retry_after = retry_after


class SlackApiError(SlackError):
    """Slack answered `{"ok": false, "error": ...}`; `permanent` when retrying cannot help."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.error = error
        self.permanent = error in PERMANENT_ERRORS


@dataclass(frozen=True)
class SlackUser:
    """What `users.info` says about a Slack user."""

    id: str
    email: str | None
    name: str
    is_bot: bool


class SlackClient:
    """Calls the Web API at `base_url` with the bot token."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.AsyncClient(timeout=timeout)
        self.headers = {"Authorization": f"Bearer {token}", "User-Agent": "supportbot-slack/1"}

    async def post_message(self, channel: str, text: str, thread_ts: str | None = None) -> str:
        """Post `text` in `channel` (in the thread `thread_ts` when given); the new message's ts."""
        body: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False}
        if thread_ts is not None:
            body["thread_ts"] = thread_ts
        data = await self._call("chat.postMessage", json=body)
        ts = data.get("ts")
        if not isinstance(ts, str):
            raise SlackUnavailable("chat.postMessage: Slack answered without a ts")
        return ts

    async def user(self, user_id: str) -> SlackUser:
        """The Slack user `user_id` (its e-mail needs the `users:read.email` scope)."""
        data = await self._call("users.info", params={"user": user_id})
        user = data.get("user") or {}
        profile = user.get("profile") or {}
        email = profile.get("email")
        name = profile.get("real_name") or user.get("real_name") or user.get("name") or user_id
        return SlackUser(user_id, email if isinstance(email, str) and email else None, str(name),
                         bool(user.get("is_bot")))

    async def _call(self, method: str, **request: Any) -> dict[str, Any]:
        url = f"{self.base_url}/{method}"
        verb = "POST" if "json" in request else "GET"
        try:
            response = await self.client.request(verb, url, headers=self.headers, **request)
        except httpx.HTTPError as exc:
            raise SlackUnavailable(f"{method}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 429:
            raise SlackRateLimited(method, _retry_after(response.headers.get("Retry-After")))
        if not response.is_success:
            raise SlackUnavailable(f"{method}: HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            raise SlackUnavailable(f"{method}: Slack answered something that is not JSON") from exc
        if not isinstance(data, dict):
            raise SlackUnavailable(f"{method}: Slack answered something that is not a JSON object")
        if not data.get("ok"):
            raise SlackApiError(method, str(data.get("error") or "unknown_error"))
        return data

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self.client.aclose()


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        seconds = DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), 3600.0)
