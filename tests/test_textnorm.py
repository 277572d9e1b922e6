"""What a reader sees through: the character-level disguises shared by escalation and the leak guard."""

from __future__ import annotations

import pytest

from service.textnorm import strip_accents, unleet, unmask


@pytest.mark.parametrize("disguised", [
    "ｒｅｆｕｎｄ",  # full-width
    "re\u200bfu\u200dnd",  # zero-width space and joiner
    "ref\u00adund",  # soft hyphen
    "r\u0435fund",  # Cyrillic e
    "\U0001f161\U0001f154\U0001f155\U0001f164\U0001f15d\U0001f153",  # negative circled emoji letters
    "\U0001f181\U0001f174\U0001f175\U0001f184\U0001f17d\U0001f173",  # negative squared emoji letters
    "\U0001f1f7\U0001f1ea\U0001f1eb\U0001f1fa\U0001f1f3\U0001f1e9",  # regional indicators
    "𝐫𝐞𝐟𝐮𝐧𝐝",  # mathematical bold
])
def test_disguised_letters_read_as_latin(disguised: str) -> None:
    assert unmask(disguised) == "refund"


def test_accented_letters_of_european_languages_are_kept() -> None:
    assert unmask("Rückerstattung, réembolsé, ¿reembolso?") == "rückerstattung, réembolsé, ¿reembolso?"
    assert strip_accents("Rückerstattung réembolsé") == "Ruckerstattung reembolse"


def test_leetspeak_readings_are_offered_not_imposed() -> None:
    assert unleet("hum4n") == ["human"]
    assert unleet("1awyer") == ["iawyer", "lawyer"]
    assert unleet("2024") == [] and unleet("refund") == []
