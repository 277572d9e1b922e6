"""Word-level readings: rule words out of regular expressions, spelled-out letters, leetspeak, names, real words."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.spelling import (
    Token,
    Vocabulary,
    is_english_word,
    join_spelled_out,
    leet_reading,
    pattern_words,
    segment,
)
from service.spelling import (
    proper_names as find_names,
)

WORDS = Vocabulary.of({"refund", "human", "please", "lawyers", "unauthorized", "chargebacks", "sue"})


def test_pattern_words_spell_out_classes_optional_letters_and_gaps() -> None:
    words = pattern_words(r"\bunauthori[sz]ed\b|\bcharge ?backs?\b|\b(lawyers?|attorneys?)\b")

    assert {"unauthorised", "unauthorized", "charge", "chargebacks", "lawyers", "attorneys"} <= words
    assert not {"b", "sz"} & words


def test_vocabulary_knows_other_forms_of_its_words() -> None:
    assert WORDS.knows("refunded") and WORDS.knows("lawyer") and WORDS.knows("chargeback")
    assert not WORDS.knows("hacker") and not WORDS.knows("refine")


@pytest.mark.parametrize(("text", "read"), [
    ("r e f u n d", "refund"), ("r.e.f.u.n.d.", "refund."), ("h u m a n p l e a s e", "human please"),
    ("x y z r-e-f-u-n-d", "x y z refund"), ("h u m @ n", "human"), ("a b c test", "a b c test"),
    ("u.s.a", "u.s.a"), ("ref und", "ref und"),
])
def test_spelled_out_letters_are_joined_only_into_known_words(text: str, read: str) -> None:
    assert join_spelled_out(text, WORDS) == read


def test_segment_prefers_covering_letters_then_fewer_words() -> None:
    assert segment("humanplease", WORDS) == ("human", "please")
    assert segment("arefund", WORDS) == ("a", "refund")
    assert segment("abc", WORDS) is None


@pytest.mark.parametrize(("token", "read"), [
    ("r3fund", "refund"), ("hum4n", "human"), ("1awyers", "lawyers"), ("$ue", "sue"),
    ("4k", None), ("v3", None), ("h4cker", None), ("2fa", None),
])
def test_leet_readings_must_spell_a_known_word(token: str, read: str | None) -> None:
    assert leet_reading(token, WORDS) == read


def test_common_english_words_are_known_and_typos_are_not() -> None:
    assert all(is_english_word(w) for w in ["hacker", "packed", "backed", "layer", "contact", "counsel"])
    assert not any(is_english_word(w) for w in ["humen", "agnet", "speek", "refnd"])


def _tokens(*words: str, starts: tuple[int, ...] = (0,)) -> list[Token]:
    return [Token(w.removesuffix("'s"), sentence_start=i in starts, possessive=w.endswith("'s"))
            for i, w in enumerate(words)]


def test_capitalized_rule_words_are_names_when_introduced_beside_a_surname_or_possessive() -> None:
    cares = WORDS.knows

    def proper_names(tokens: list[Token], cares: Callable[[str], bool]) -> set[int]:
        return find_names(tokens, cares, cares)

    assert proper_names(_tokens("Our", "customer", "Sue", "Miller"), cares) == {2}
    assert proper_names(_tokens("Sue", "Miller", "called"), cares) == {0}
    assert proper_names(_tokens("Sue's", "invoice"), cares) == {0}
    assert proper_names(_tokens("Can", "Sue", "get", "access"), cares) == {1}
    assert proper_names(_tokens("I", "will", "Sue", "you"), cares) == set()
    assert proper_names(_tokens("I", "want", "a", "Refund"), cares) == set()
    assert proper_names(_tokens("Human", "please"), cares) == set()
    assert proper_names(_tokens("I", "Want", "A", "Human", "Now"), cares) == set()
