"""Words written to dodge a rule: letters spelled out, digits for letters, misspellings, and names.

Each reading is accepted only when it spells a word some rule cares about (a `Vocabulary`), so "4k", "a b
test" or "v3" stay as written; and a real English word is never "repaired" into a rule word ("hacker" is not
"hacked", "layer" is not "lawyer"). The vocabulary is read out of the rules' own regular expressions, so
rules stay data: a new rule's words are read through disguises without a change of code.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import Stemmer

from .textnorm import unleet

# Short words a spelled-out phrase may contain besides rule words ("a r e f u n d" is "a refund").
FUNCTION_WORDS = frozenset({"a", "i", "an", "to", "me", "my", "us", "we", "of", "in", "on", "it", "is", "no"})
# An English word seen fewer times than this in the dictionary's corpus may be a typo ("refound").
_MIN_COUNT = 100
_STEMMERS = threading.local()  # a PyStemmer stemmer must not be shared between threads


def _stem(word: str) -> str:
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = Stemmer.Stemmer("english")
    return str(stemmer.stemWord(word))


@dataclass(frozen=True)
class Vocabulary:
    """Words the rules care about, and their stems, so "refunded" counts when a rule says "refund"."""

    words: frozenset[str]
    stems: frozenset[str]
    # First three letters of every word and stem: most strings are rejected by one look-up, without stemming.
    openings: frozenset[str]

    @classmethod
    def of(cls, words: Iterable[str]) -> Vocabulary:
        """A vocabulary of `words` (lower-case)."""
        kept = frozenset(words)
        stems = frozenset(_stem(w) for w in kept if len(w) >= 4)
        return cls(kept, stems, frozenset(w[:3] for w in itertools.chain(stems, kept) if len(w) >= 3))

    def knows(self, word: str) -> bool:
        """True when `word` is one of the words, or shares a stem with one (four letters or more)."""
        if word in self.words:
            return True
        return len(word) >= 4 and word[:3] in self.openings and _stem(word) in self.stems

    def __or__(self, other: Vocabulary) -> Vocabulary:
        return Vocabulary(self.words | other.words, self.stems | other.stems, self.openings | other.openings)


_ESCAPE = re.compile(r"\\[a-z]")
_CLASS = re.compile(r"\[([a-z]{2,6})\]")
_OPTIONAL_GAP = re.compile(r"(?:\[[- ]+\]| |-)\?")
_LETTERS = re.compile(r"[a-z]{3,}")


def pattern_words(source: str) -> set[str]:
    """The words a regular expression spells: `authori[sz]ed` gives both spellings, `charge ?backs?` both forms."""
    text = _ESCAPE.sub(" ", source.lower())
    variants = [text, _OPTIONAL_GAP.sub("", text)]
    words: set[str] = set()
    for variant in variants:
        for expanded in _expand_classes(variant):
            words.update(_LETTERS.findall(expanded))
    return words


def _expand_classes(text: str, limit: int = 8) -> list[str]:
    found = _CLASS.search(text)
    if found is None:
        return [text]
    heads = [text[:found.start()] + letter for letter in found.group(1)]
    tails = _expand_classes(text[found.end():], limit)
    return [head + tail for head, tail in itertools.islice(itertools.product(heads, tails), limit)]


# A run of three or more single letters (or leet symbols) split by spaces, dots, dashes or similar.
_SPELLED = re.compile(
    r"(?<![^\W_])(?:[^\W_]|[@$])(?:(?:[ \t]*[.\-_*·•/][ \t]*|[ \t]+)(?:[^\W_]|[@$])){2,}(?![^\W_])"
)
_GAP = re.compile(r"[\s.\-_*·•/]+")
_MAX_WORD = 20
# Leetspeak readings multiply (16 per run); past this many letters only the run as written is read.
_MAX_LEET_RUN = 40
# A letter left as it was costs more than any number of words, so the reading covering most letters wins.
_LEFTOVER = 1000


# A word cut by hyphens or dots ("re-fund", "law.yer"), joined when the whole is a rule word.
_CUT_WORD = re.compile(r"(?<![^\W_])[^\W_]+(?:[-.·][^\W_]+)+(?![^\W_])")


def join_spelled_out(text: str, vocabulary: Vocabulary) -> str:
    """Letters split by spaces, dots or dashes, joined where they spell rule words ("r e f u n d" -> "refund").

    A word cut by hyphens or dots is joined the same way ("re-fund", "charge-back"); one cut by a space
    ("ref und") is not: too many pairs of real words make a third ("any one", "can cel").
    """
    text = _SPELLED.sub(lambda m: _spelled_reading(m.group(0), vocabulary) or m.group(0), text)
    return _CUT_WORD.sub(lambda m: _cut_word_reading(m.group(0), vocabulary) or m.group(0), text)


def _cut_word_reading(word: str, vocabulary: Vocabulary) -> str | None:
    joined = _GAP.sub("", word).lower()
    return joined if len(joined) >= 4 and joined.isalpha() and vocabulary.knows(joined) else None


def _spelled_reading(run: str, vocabulary: Vocabulary) -> str | None:
    joined = _GAP.sub("", run).lower()
    readings = [joined, *(unleet(joined) if len(joined) <= _MAX_LEET_RUN else [])]
    for reading in readings:
        words = segment(reading, vocabulary)
        if words:
            return " ".join(words)
    return None


@lru_cache(maxsize=1024)
def segment(letters: str, vocabulary: Vocabulary) -> tuple[str, ...] | None:
    """`letters` as known words, fewest letters left over, then fewest words ("xhumanplease" -> x human please).

    None unless one of the words has four letters or more: "a b c" spells nothing worth joining.
    """
    if not any(letters[i:i + 3] in vocabulary.openings for i in range(len(letters) - 3)):
        return None  # no word of four letters or more can start anywhere
    cost = [0] + [_LEFTOVER * (len(letters) + 1)] * len(letters)
    start_of = list(range(-1, len(letters)))
    for end in range(1, len(letters) + 1):
        cost[end], start_of[end] = cost[end - 1] + _LEFTOVER, end - 1
        for start in range(max(0, end - _MAX_WORD), end):
            piece = letters[start:end]
            known = piece in FUNCTION_WORDS or (len(piece) >= 3 and vocabulary.knows(piece))
            if known and cost[start] + 1 < cost[end]:
                cost[end], start_of[end] = cost[start] + 1, start
    words: list[str] = []
    end = len(letters)
    while end > 0:
        words.append(letters[start_of[end]:end])
        end = start_of[end]
    return tuple(reversed(words)) if any(len(word) >= 4 for word in words) else None


def leet_reading(token: str, vocabulary: Vocabulary) -> str | None:
    """The reading of a token with digits or symbols for letters that spells a rule word ("r3fund"), else None."""
    return next((reading for reading in unleet(token) if vocabulary.knows(reading)), None)


@lru_cache(maxsize=1)
def _common_english_words() -> frozenset[str]:
    # Loaded on the first near-miss only (about 0.7 s, 6 MB kept): most messages never need it.
    from spellchecker import SpellChecker

    counts = SpellChecker(language="en", distance=1).word_frequency.dictionary
    return frozenset(word for word, count in counts.items() if count >= _MIN_COUNT)


def is_english_word(word: str) -> bool:
    """True for a common English word (a repair must never turn one into another: "layer" is not "lawyer")."""
    return word in _common_english_words()


def is_title_case(word: str) -> bool:
    """True for "Sue" or "Miller": a capital, then lower-case letters."""
    return len(word) >= 2 and word[0].isupper() and word[1:].islower()


class Token(NamedTuple):
    """A word of the original text: its text, and whether it starts a sentence or ends in a possessive 's."""

    text: str
    sentence_start: bool
    possessive: bool


# Words that introduce a person: a capitalized rule word after one is a name ("our customer Sue", "ask Sue").
_INTRODUCERS = frozenset({
    "customer", "client", "colleague", "coworker", "teammate", "manager", "boss", "user", "admin", "named",
    "called", "dear", "hi", "hello", "hey", "thanks", "cc", "ask", "asked", "tell", "told", "and", "with", "from",
    "mr", "mrs", "ms", "dr",
})
# Opening a question, these put a name next ("Can Sue get access?"); mid-sentence they are "I will Sue you".
_QUESTION_OPENERS = frozenset({"can", "could", "will", "would", "did", "does", "has", "is", "should", "may"})


def proper_names(tokens: list[Token], nameable: Callable[[str], bool], known: Callable[[str], bool]) -> set[int]:
    """Positions of capitalized `nameable` words that are names here ("Sue" in "Our customer Sue Miller").

    Such a word is a name after a word introducing a person ("customer Sue", "Can Sue ...?"), before a
    capitalized word that is not `known` ("Sue Miller"), or with a possessive ("Sue's"). A capital alone
    says little ("delete all Data"), and Title Case or capitals throughout say nothing: no names there.
    """
    words = [t.text for t in tokens if t.text.isalpha() and len(t.text) >= 2]
    if len(words) >= 3 and all(is_title_case(w) or w.isupper() for w in words):
        return set()
    names = set()
    for index, token in enumerate(tokens):
        if not is_title_case(token.text) or not nameable(token.text.lower()):
            continue
        before = tokens[index - 1] if index > 0 and not token.sentence_start else None
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        introduced = before is not None and (before.text.lower() in _INTRODUCERS or (
            before.sentence_start and before.text.lower() in _QUESTION_OPENERS))
        surname = (after is not None and not after.sentence_start and is_title_case(after.text)
                   and not known(after.text.lower()))
        if introduced or surname or token.possessive:
            names.add(index)
    return names
