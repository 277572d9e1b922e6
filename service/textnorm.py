"""Text as a reader sees it: the disguises a person reads straight through, undone before any matching.

Escalation rules and the leak guard both match plain Latin text. A visitor dodging a rule, or a model
talked into leaking, writes what still reads the same to a person: full-width letters, Cyrillic or Greek
look-alikes, zero-width spaces and soft hyphens inside words, digits for letters. `unmask` undoes the
character-level disguises, which are safe everywhere. Leetspeak is ambiguous ("4k", "2fa", "v3"), so it is
offered as candidates (`unleet`) for callers to accept only when they spell a word they care about.
"""

from __future__ import annotations

import itertools
import unicodedata
from functools import lru_cache

from confusable_homoglyphs.confusables import confusables_data


def _latin_look_alikes() -> dict[int, str]:
    """Every non-ASCII character Unicode lists as confusable with one ASCII letter or digit, mapped to it."""
    table: dict[int, str] = {}
    for char, homoglyphs in confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        latin = [h["c"] for h in homoglyphs if len(h["c"]) == 1 and h["c"].isascii() and h["c"].isalnum()]
        if latin:
            table[ord(char)] = latin[0]
    # Emoji letters with no compatibility form: negative circled, negative squared, regional indicators.
    for first in (0x1F150, 0x1F170, 0x1F1E6):
        table.update({first + n: chr(ord("A") + n) for n in range(26)})
    return table


_LOOK_ALIKES = _latin_look_alikes()
# Digits and symbols used for letters. "1" reads as i or l, so it has two candidates.
LEET: dict[str, tuple[str, ...]] = {
    "0": ("o",), "1": ("i", "l"), "3": ("e",), "4": ("a",), "5": ("s",), "7": ("t",), "8": ("b",),
    "@": ("a",), "$": ("s",), "!": ("i",), "|": ("l",), "+": ("t",),
}


def is_invisible(char: str) -> bool:
    """True for format characters that show nothing: zero-width spaces and joiners, soft hyphens, BOMs."""
    return unicodedata.category(char) == "Cf"


@lru_cache(maxsize=4096)
def unmask(text: str) -> str:
    """NFKC (full-width and styled letters), invisible characters removed, look-alikes as Latin, lower-case."""
    return unmask_keep_case(text).lower()


def unmask_keep_case(text: str) -> str:
    """`unmask` without lower-casing, for callers that read case (a capitalized name is not a verb)."""
    if text.isascii():  # nothing to undo: no wide, styled, invisible or look-alike characters
        return text
    text = unicodedata.normalize("NFKC", text)
    text = "".join(char for char in text if not is_invisible(char))
    return text.translate(_LOOK_ALIKES)


def strip_accents(text: str) -> str:
    """`text` without combining accents ("réembolsé" -> "reembolse"); ß and other letters kept."""
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def unleet(token: str, limit: int = 16) -> list[str]:
    """The readings of a token with digits or symbols for letters ("hum4n" -> ["human"]), at most `limit`.

    Empty when the token has no letters (a number is a number) or nothing to undo.
    """
    if not any(char.isalpha() for char in token) or not any(char in LEET for char in token):
        return []
    choices = [LEET.get(char, (char,)) for char in token]
    return ["".join(parts) for parts in itertools.islice(itertools.product(*choices), limit)]
