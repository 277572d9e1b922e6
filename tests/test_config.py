"""Settings from the environment, generated secrets, the model price table."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from service.config import Settings, secret_key


def test_plain_openai_api_key_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUPPORTBOT_OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-plain-env")

    assert Settings(_env_file=None).openai_api_key == "sk-from-plain-env"  # type: ignore[call-arg]


def test_prefixed_settings_and_origin_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTBOT_ALLOWED_ORIGINS", "https://shop.example, https://www.example/")
    monkeypatch.setenv("SUPPORTBOT_MODEL", "gpt-4.1-mini")
    monkeypatch.setenv("SUPPORTBOT_LOG_LEVEL", "debug")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.allowed_origins == ["https://shop.example", "https://www.example"]
    assert settings.model == "gpt-4.1-mini"
    assert settings.log_level == "DEBUG"


def test_default_database_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]

    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve()}/supportbot.db"
    assert not settings.hosted_model_configured or settings.openai_api_key


def test_secret_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key=None, _env_file=None)  # type: ignore[call-arg]

    first = secret_key(settings)
    second = secret_key(settings)

    assert first == second and len(first) >= 40
    mode = (tmp_path / "secret_key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_price_lookup_matches_dated_model_names() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.price_per_token("gpt-4o-mini-2024-07-18") == (0.15e-6, 0.60e-6)
    assert settings.price_per_token("gpt-4o-2024-08-06") == (2.5e-6, 10e-6)
    assert settings.price_per_token("some-local-model") is None


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTBOT_MAX_TOKENS", "0")

    with pytest.raises(ValueError, match="max_tokens"):
        Settings(_env_file=None)  # type: ignore[call-arg]
