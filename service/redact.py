"""Personal data out of training data, stored messages and model requests: typed placeholders, consistent
within one example (or one conversation)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

_SECRET = re.compile(
    r"\bsk-(?:proj-)?[A-Za-z0-9_-]{16,}"
    r"|\b(?:ghp|gho|ghs|ghu|github_pat)_[A-Za-z0-9_]{20,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\bxox[abpr]-[A-Za-z0-9-]{10,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|(?<=Bearer )[A-Za-z0-9._~+/-]{16,}=*"
    r"|(?i:(?<=api[_-]key[=:] )|(?<=api[_-]key=)|(?<=token=)|(?<=password=)|(?<=secret=))\S{8,}"
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(r"(?<![\w+#/-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w-])")
_DIGIT = re.compile(r"\d")
_DATE = re.compile(r"^\d{4}[./-]\d{1,2}[./-]\d{1,2}$|^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}$")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of payment card numbers."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_card(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_phone(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 8 <= len(digits) <= 15 and not _DATE.match(text.strip())


_SECRET_MARKERS = ("sk-", "_", "akia", "xox", "eyj", "bearer ", "key", "token=", "password=", "secret=")


def _may_hold_secret(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def _has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


# (placeholder kind, pattern, check on the match, cheap test the text must pass for the pattern to
# match at all) in the order they are applied. The tests skip most of the regex work on ordinary text;
# each is implied by its pattern (every secret alternative contains one of the markers).
_RULES: tuple[tuple[str, re.Pattern[str], Callable[[str], bool], Callable[[str], bool]], ...] = (
    ("SECRET", _SECRET, lambda _text: True, _may_hold_secret),
    ("EMAIL", _EMAIL, lambda _text: True, lambda text: "@" in text),
    ("CARD", _CARD, _is_card, _has_digit),
    ("IP", _IPV4, _is_ip, _has_digit),
    ("IP", _IPV6, lambda text: text.count(":") >= 2 and _is_ip(text), lambda text: text.count(":") >= 2),
    ("PHONE", _PHONE, _is_phone, _has_digit),
)


KINDS = frozenset(kind for kind, *_ in _RULES)


def stored_kinds(*, redact_stored: bool, emails: bool, phones: bool, cards: bool) -> frozenset[str]:
    """What is redacted before a message is written: cards (Luhn-valid) unless switched off; with
    `redact_stored`, secrets too, and e-mails and phone numbers when asked."""
    kinds = {"CARD"} if cards or redact_stored else set()
    if redact_stored:
        kinds |= {"SECRET"} | ({"EMAIL"} if emails else set()) | ({"PHONE"} if phones else set())
    return frozenset(kinds)


class Redactor:
    """Replaces personal data with `[EMAIL]`, `[PHONE]`, `[CARD]`, `[IP]`, `[SECRET]`.

    One instance per example: the same value gets the same placeholder in every message, a second
    distinct value of a kind gets `[EMAIL_2]`, and so on (`numbered`: the first is `[EMAIL_1]`).
    `kinds` limits it to some kinds (default: all).
    """

    def __init__(self, kinds: frozenset[str] = KINDS, numbered: bool = False) -> None:
        self._seen: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self._rules = tuple(rule for rule in _RULES if rule[0] in kinds)
        self._numbered = numbered

    def copy(self) -> Redactor:
        """A redactor that continues from this one's placeholders without changing them."""
        twin = Redactor(numbered=self._numbered)
        twin._rules = self._rules
        twin._seen, twin._counts = dict(self._seen), dict(self._counts)
        return twin

    def _placeholder(self, kind: str, value: str) -> str:
        key = (kind, value.lower())
        if key not in self._seen:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            number = self._counts[kind]
            self._seen[key] = f"[{kind}]" if number == 1 and not self._numbered else f"[{kind}_{number}]"
        return self._seen[key]

    def redact(self, text: str) -> str:
        """`text` with every recognised piece of personal data replaced."""
        for kind, pattern, check, possible in self._rules:
            if possible(text):
                text = pattern.sub(self._replacer(kind, check), text)
        return text

    def _replacer(self, kind: str, check: Callable[[str], bool]) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            value = match.group(0)
            return self._placeholder(kind, value) if check(value) else value

        return replace


def find_secrets(text: str) -> list[tuple[int, str]]:
    """(line number, masked match) of every key- or token-like string in `text`."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _SECRET.finditer(line):
            value = match.group(0)
            found.append((number, value[:6] + "..." + value[-2:]))
    return found
