"""Language files: parsing with file/line errors, accents, the last good version, texts, the shipped files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from service.config import PROJECT_ROOT
from service.errors import ConfigError
from service.escalation import Turnlet, detect_before, fold
from service.languages import TEXT_KEYS, LanguageStore, parse_language_text
from service.policies import PolicyStore

POLICIES = {"refund", "legal", "security", "privacy", "cancellation"}
SWEDISH = """language: sv
name: Svenska
english_name: Swedish
texts:
  handoff: "Jag lämnar över samtalet till vår support."
human_request:
  match: ['\\b(prata|tala) med en (manniska|person|handlaggare)\\b']
failure:
  match: ['\\bhjalpte inte\\b']
  unless: ['\\bdet fungerar nu\\b']
policies:
  refund:
    match: ['\\bpengarna tillbaka\\b', '\\båterbetalning\\b']
    unless: ['\\båterbetalningsrapport']
"""


def _store(tmp_path: Path, files: dict[str, str]) -> LanguageStore:
    folder = tmp_path / "languages"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return LanguageStore(tmp_path, interval=0, policy_names=lambda: POLICIES)


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("language: de\nname: D\nenglish_name: G\nhuman_request:\n  match:\n    - '(unclosed'\n", 6,
     "invalid regular expression"),
    ("language: de\nname: D\nenglish_name: G\ntexts:\n  handof: 'x'\n", 5, "unknown key 'handof'"),
    ("language: fr\nname: D\nenglish_name: G\n", 1, "must equal the file name (de)"),
    ("language: de\nname: D\nenglish_name: G\npolicies:\n  refunds:\n    match: ['x']\n", 5,
     "policy 'refunds' is not a rule of policies.yaml"),
    ("language: de\nname: D\nenglish_name: G\nfailure:\n  unless: ['x']\n", 5, "needs a 'match' list"),
    ("language: de\nname: D\n", 1, "'english_name:' is missing"),
    ("language: de\nname: D\nenglish_name: G\nrules: []\n", 4, "unknown key 'rules'"),
    ("language: de\n\tname: D\n", 2, "not valid YAML"),
])
def test_language_file_errors_name_the_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_language_text(text, "knowledge/languages/de.yaml", "de", POLICIES)

    assert raised.value.line == line and reason in raised.value.reason


def test_patterns_and_messages_are_read_without_accents(tmp_path: Path) -> None:
    rules = _store(tmp_path, {"sv.yaml": SWEDISH}).rules(["en", "sv"])
    refund = rules[0].policies[0]

    assert [p.pattern for p in refund.match] == [r"\bpengarna tillbaka\b", r"\baterbetalning\b"]
    assert refund.matches(fold("Jag vill ha ÅTERBETALNING nu")) == "aterbetalning"
    assert refund.matches(fold("jag vill ha aterbetalning")) == "aterbetalning"
    assert refund.matches(fold("Exportera återbetalningsrapporten")) is None


def test_a_new_language_is_a_file_not_code(tmp_path: Path) -> None:
    """Swedish, added as sv.yaml, escalates Swedish requests through the engine with the usual reasons."""
    rules = _store(tmp_path, {"sv.yaml": SWEDISH}).rules(["en", "sv"])
    policies = PolicyStore(PROJECT_ROOT / "knowledge", interval=0).rules()
    history = [Turnlet("user", "Exporten misslyckas"), Turnlet("assistant", "Dela upp exporten."),
               Turnlet("user", "det hjälpte inte"), Turnlet("assistant", "Prova ett kortare datumintervall.")]

    def reason(text: str, past: list[Turnlet] | None = None) -> str | None:
        signal = detect_before(text, past or [], policies, failures_to_escalate=2, languages=rules)
        return signal.reason if signal else None

    assert reason("Kan jag prata med en människa?") == "user_request"
    assert reason("Jag vill ha pengarna tillbaka") == "policy:refund"
    assert reason("hjälpte inte heller", history) == "repeated_failure"
    assert reason("Det fungerar nu, hjälpte inte först", history) is None
    assert reason("Hur delar jag en instrumentpanel?") is None
    assert _store(tmp_path, {}).rules(["en"]) == ()


def test_broken_edit_keeps_the_last_good_file_and_reports_it(tmp_path: Path) -> None:
    store = _store(tmp_path, {"sv.yaml": SWEDISH})
    assert store.text("sv", "handoff") == "Jag lämnar över samtalet till vår support."

    path = tmp_path / "languages" / "sv.yaml"
    path.write_text(SWEDISH.replace("'\\bhjalpte inte\\b'", "'(hjalpte'"), encoding="utf-8")
    os.utime(path, ns=(10**9, 10**9))

    assert store.text("sv", "handoff") == "Jag lämnar över samtalet till vår support."
    assert store.rules(["sv"])[0].failure is not None
    (error,) = store.errors()
    assert error.line == 9 and "invalid regular expression" in error.reason and error.path.endswith("sv.yaml")


def test_texts_fall_back_to_none_for_a_missing_key_or_language(tmp_path: Path) -> None:
    store = _store(tmp_path, {"sv.yaml": SWEDISH})

    assert store.text("sv", "budget") is None
    assert store.text("fi", "handoff") is None


def test_only_configured_languages_run(tmp_path: Path) -> None:
    store = _store(tmp_path, {"sv.yaml": SWEDISH})

    assert [r.code for r in store.rules(["en", "sv"])] == ["sv"]
    assert store.rules(["en", "de"]) == ()


def test_shipped_language_files_are_valid_and_complete() -> None:
    policies = PolicyStore(PROJECT_ROOT / "knowledge", interval=0)
    store = LanguageStore(PROJECT_ROOT / "knowledge", interval=0,
                          policy_names=lambda: {r.name for r in policies.rules()})
    languages = store.languages()

    assert store.errors() == ()
    assert {"en", "de", "es", "fr"} <= set(languages)
    for code in ("de", "es", "fr"):
        rules = languages[code].rules
        assert rules.human_request is not None and rules.failure is not None
        assert {rule.name for rule in rules.policies} == POLICIES
        assert set(languages[code].texts) == set(TEXT_KEYS)


def test_prompt_check_reports_language_file_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from service.config import Settings
    from service.prompt_tools import check_files

    shutil.copytree(PROJECT_ROOT / "prompts", tmp_path / "prompts")
    shutil.copytree(PROJECT_ROOT / "knowledge", tmp_path / "knowledge")
    (tmp_path / "knowledge" / "languages" / "sv.yaml").write_text(SWEDISH.replace("  refund:", "  refunds:"))
    settings = Settings(prompts_dir=tmp_path / "prompts", knowledge_dir=tmp_path / "knowledge",
                        languages=["en", "de", "sv", "fi"], _env_file=None)

    status = check_files(settings)

    err = capsys.readouterr().err
    assert status == 1
    assert f"{tmp_path / 'knowledge' / 'languages' / 'sv.yaml'}:12: policy 'refunds' is not a rule" in err
    assert "warning: SUPPORTBOT_LANGUAGES lists 'fi' but" in err


@pytest.mark.parametrize(("text", "reason"), [
    ("Mein Konto wurde g3hackt", "policy:security"),
    ("Ich will eine Rück\u200berstattung", "policy:refund"),
    ("\uff32\u00dc\uff23\uff2b\uff25\uff32\uff33\uff34\uff21\uff34\uff34\uff35\uff2e\uff27 bitte", "policy:refund"),
    ("quiero un r e e m b o l s o", "policy:refund"),
    ("Je veux être rembour\u00adsé", "policy:refund"),
    ("Ich möchte mit einem M\u0435nschen sprechen", "user_request"),
])
def test_disguises_are_read_through_in_other_languages(text: str, reason: str) -> None:
    policies = PolicyStore(PROJECT_ROOT / "knowledge", interval=0)
    languages = LanguageStore(PROJECT_ROOT / "knowledge", interval=0).rules(["de", "es", "fr"])

    signal = detect_before(text, [], policies.rules(), failures_to_escalate=2, languages=languages)

    assert signal is not None and signal.reason == reason
