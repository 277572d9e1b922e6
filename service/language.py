"""The visitor's language: each message detected with lingua, limited to the configured languages.

A message too short (or too ambiguous) to tell is given the conversation's language so far, else the widget's
locale hint, else the default (English when configured). Detection runs lingua's high-accuracy mode by default:
on the 761 labeled user messages it was confidently wrong on none, where the low-accuracy mode was on 6 % ("Abo
kündigen" read as Spanish, plain English as Italian); the price is ~190-250 MB and seconds of load per process,
paid once in `Runtime.warm_up`. SUPPORTBOT_LANGUAGE_DETECTION=fast picks the low-accuracy mode (~25 MB, <1 s).
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

DEFAULT_LANGUAGES = ("en", "de", "es", "fr", "pt", "it", "nl")
# A detection counts when lingua is this sure and the message has this many words; below, the fallbacks decide.
MIN_CONFIDENCE = 0.5
MIN_WORDS = 2

_lock = threading.Lock()


def is_supported(code: str) -> bool:
    """True when lingua knows the ISO 639-1 code."""
    return hasattr(IsoCode639_1, code.upper()) and len(code) == 2


def english_name(code: str) -> str:
    """The language's English name ("de" -> "German"), as lingua knows it; the code itself if unknown."""
    if not is_supported(code):
        return code
    return Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())).name.title()


@lru_cache(maxsize=4)
def _detector(languages: tuple[str, ...], fast: bool) -> LanguageDetector:
    codes = [getattr(IsoCode639_1, code.upper()) for code in languages]
    builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    if fast:
        builder = builder.with_low_accuracy_mode()
    return builder.with_preloaded_language_models().build()


def detector(languages: Sequence[str], fast: bool = False) -> LanguageDetector:
    """The process's detector for these languages, built (and its models loaded) on first use.

    Loading holds the GIL throughout (seconds in high-accuracy mode): start-up does it, before serving.
    """
    with _lock:  # two first turns at once load the models once
        return _detector(tuple(sorted(languages)), fast)


def locale_language(visitor: Mapping[str, Any] | None, languages: Sequence[str]) -> str | None:
    """The configured language the widget's locale names (metadata `locale`, "de-AT" -> "de"), if any."""
    locale = (visitor or {}).get("locale")
    if not isinstance(locale, str):
        return None
    code = locale.strip().replace("_", "-").split("-")[0].lower()
    return code if code in languages else None


@dataclass(frozen=True)
class Guess:
    """What detection made of one message: a confident language, or None, and what to fall back on."""

    detected: str | None
    languages: tuple[str, ...]
    default: str

    def resolve(self, conversation: str | None, visitor: Mapping[str, Any] | None) -> str:
        """The message's language: detected, else the conversation's so far, else the locale hint, else default."""
        return self.detected or conversation or locale_language(visitor, self.languages) or self.default


class LanguageDetection:
    """Detects a visitor message's language among the configured ones."""

    def __init__(self, languages: Sequence[str], fast: bool = False) -> None:
        self.languages = tuple(languages)
        self.default = "en" if "en" in self.languages else self.languages[0]
        self.fast = fast

    def warm(self) -> None:
        """Load the models now (blocking) so no turn waits for them."""
        if len(self.languages) > 1:
            detector(self.languages, self.fast)

    def guess(self, text: str) -> Guess:
        """A confident language for `text`, or None when it is too short or ambiguous to tell."""
        return Guess(self._detect(text), self.languages, self.default)

    def _detect(self, text: str) -> str | None:
        if len(self.languages) == 1:
            return self.languages[0]
        if len(text.split()) < MIN_WORDS:
            return None
        # NFKC: lingua reads fullwidth or styled letters ("ＩＫ ＷＩＬ") as no language's, and then says English
        folded = unicodedata.normalize("NFKC", text)
        values = detector(self.languages, self.fast).compute_language_confidence_values(folded)
        if not values or values[0].value < MIN_CONFIDENCE:
            return None
        return str(values[0].language.iso_code_639_1.name.lower())
