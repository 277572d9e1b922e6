"""Escalation: when a human must take over a conversation, and why.

Deterministic signals (`detect_before`) run on the user's message before any model call, so a refund
request never waits on, or depends on, the model. Signals in the provider's answer (`detect_after`) come
from the `escalate_to_human` tool call or the offline provider finding nothing.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .knowledge import KnownIssue
from .languages import LanguageRules
from .policies import PolicyRule
from .providers.base import ESCALATE_TOOL_NAME, Completion
from .spelling import (
    FUNCTION_WORDS,
    Token,
    Vocabulary,
    is_english_word,
    join_spelled_out,
    leet_reading,
    pattern_words,
    proper_names,
)
from .textnorm import strip_accents, unmask_keep_case

log = logging.getLogger(__name__)

USER_REQUEST = "user_request"
REPEATED_FAILURE = "repeated_failure"
MODEL_UNAVAILABLE = "model_unavailable"
MODEL_DECISION = "model_decision"
NO_ANSWER = "no_answer"
BUDGET_EXCEEDED = "budget_exceeded"
ACTION_FAILED = "action_failed"  # an action the model called failed (timeout, 5xx, not JSON, ...)
POLICY_PREFIX = "policy:"
DETERMINISTIC = (USER_REQUEST, REPEATED_FAILURE)


@dataclass(frozen=True)
class EscalationSignal:
    """A reason to hand over, as recorded: a reason code, a detail and a summary for the agent."""

    reason: str
    detail: str | None = None
    summary: str | None = None

    def public(self) -> dict[str, str | None]:
        """What the visitor's client is told."""
        return {"reason": self.reason, "detail": self.detail}

    @property
    def deterministic(self) -> bool:
        """True for the signals checked before the model: user request, policy, repeated failure."""
        return self.reason in DETERMINISTIC or self.reason.startswith(POLICY_PREFIX)


@dataclass(frozen=True)
class Turnlet:
    """A past message as the detector sees it: role and text."""

    role: str
    content: str


# Words worth repairing when misspelled ("humen", "speek", "agnet", "suport persn"). Only words of five
# letters or more are targets, so short everyday words ("sure", "tale") are never turned into others, and a
# common English word is never a target's misspelling ("hacker", "packed", "layer", "contact").
_VOCABULARY = (
    "human", "humans", "person", "people", "agent", "agents", "speak", "representative", "operator",
    "someone", "somebody", "support", "customer", "service", "transfer", "connect", "escalate",
    "refund", "chargeback", "cancel", "subscription", "account", "lawyer", "attorney", "delete",
    "personal", "hacked", "security", "vulnerability", "unauthorized", "compromised", "contract",
)
_TOKEN = re.compile(r"[a-z]+")
# A word as written, with the digits and symbols leetspeak uses for letters ("r3fund", "@ttorney", "$ue").
_WORD = re.compile(r"[\w@$|!+]+")
# What starts a sentence or a quotation: a capital after it is the usual capital, not a name.
_OPENERS = ".!?:;\"'(\u201c\u2018["
_CAPITALIZED = re.compile(r"\b[A-Z][a-z]+\b")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
# A capitalized rule word read as a name keeps this mark, so no rule's `\bsue\b` sees "Sue Miller".
NAME_MARK = "_"


@lru_cache(maxsize=4096)
def _repair(word: str) -> str:
    if len(word) < 4 or word in _VOCABULARY:
        return word
    close = difflib.get_close_matches(word, _VOCABULARY, n=1, cutoff=0.8)
    if not close or len(close[0]) < 5 or is_english_word(word):
        return word
    return close[0]


@lru_cache(maxsize=1024)
def normalize(text: str, vocabulary: Vocabulary | None = None, foreign: frozenset[str] = frozenset()) -> str:
    """The message as the rules read it: disguises undone, lower-case, misspellings of key words repaired.

    Undoes full-width and styled letters, invisible characters, look-alike letters, letters spelled out
    with spaces, dots or dashes, and digits for letters, each only where the result spells a word the rules
    care about (`vocabulary`); capitalized names that are rule words ("Sue Miller") are marked, not read.
    A word of another language's rules (`foreign`: "compromis", "cancelar") is no English misspelling.
    Cached: a turn normalizes its conversation's earlier user messages again (failure counting).
    """
    vocabulary = vocabulary or BASE_VOCABULARY
    text = unmask_keep_case(text)
    if not text.isascii():
        text = text.translate(_QUOTES)
    text = join_spelled_out(" ".join(text.split()), vocabulary)
    return _read_words(text, vocabulary, _repair if not foreign else _repair_except(foreign))


def _repair_except(foreign: frozenset[str]) -> Callable[[str], str]:
    return lambda word: word if strip_accents(word) in foreign else _repair(word)


def _read_words(text: str, vocabulary: Vocabulary, repair: Callable[[str], str]) -> str:
    names = _name_starts(text, vocabulary)
    lowered = text.lower()
    if not names or len(lowered) != len(text):  # (a rare letter may change length lower-cased)
        return _WORD.sub(lambda m: repair(w) if (w := m.group(0)).isalpha() else _read_word(w, vocabulary, repair),
                         lowered)
    return _WORD.sub(
        lambda m: NAME_MARK + m.group(0) if m.start() in names else _read_word(m.group(0), vocabulary, repair),
        lowered,
    )


def _name_starts(text: str, vocabulary: Vocabulary) -> set[int]:
    """Where the capitalized rule words that are names here begin ("Sue" in "Our customer Sue Miller")."""
    if not any(_could_be_name(text, m) and _nameable(m.group(0).lower(), vocabulary)
               for m in _CAPITALIZED.finditer(text)):
        return set()  # the common case, checked cheaply: no capital beyond a sentence's first word
    found = list(_WORD.finditer(text))
    ends = [0, *(m.end() for m in found)]
    tokens = [
        Token(m.group(0).rstrip("!|+"), sentence_start=index == 0 or _starts_sentence(text[ends[index]:m.start()]),
              possessive=text[m.end():m.end() + 2] == "'s")
        for index, m in enumerate(found)
    ]
    names = proper_names(tokens, lambda word: _nameable(word, vocabulary), vocabulary.knows)
    return {found[index].start() for index in names}


def _nameable(word: str, vocabulary: Vocabulary) -> bool:
    # Only a policy rule's own words can be names here ("sue"): the detector's words ("human", "acme",
    # "can", "the") are read as written, so "someone from Acme" still asks for a person.
    return vocabulary.knows(word) and not BASE_VOCABULARY.knows(word)


def _starts_sentence(gap: str) -> bool:
    return gap != " " and any(char in _OPENERS or char == "\n" for char in gap)


def _could_be_name(text: str, capitalized: re.Match[str]) -> bool:
    after = text[capitalized.end():capitalized.end() + 2]
    if after == "'s" or (after[:1] == " " and after[1:].isupper()):
        return True
    before = text[max(0, capitalized.start() - 4):capitalized.start()].rstrip()
    return bool(before) and before[-1] not in _OPENERS


def _read_word(word: str, vocabulary: Vocabulary, repair: Callable[[str], str] = _repair) -> str:
    if word.isalpha():
        return repair(word)
    core = word.rstrip("!|+") or word
    tail = word[len(core):]
    if core.isalpha():
        return repair(core) + tail
    return (leet_reading(core, vocabulary) or core) + tail


def _as_written(word: str) -> str:
    return word


@lru_cache(maxsize=1024)
def fold(text: str, vocabulary: Vocabulary | None = None) -> str:
    """The message as the language files' rules read it: disguises undone, lower-case, accents removed.

    No English spelling repair ("cancelar" stays "cancelar") and no names: a German noun is capitalized.
    """
    vocabulary = vocabulary or BASE_VOCABULARY
    text = unmask_keep_case(text)
    if not text.isascii():
        text = text.translate(_QUOTES)
    text = strip_accents(join_spelled_out(" ".join(text.split()), vocabulary).lower())
    return _WORD.sub(lambda m: _read_word(m.group(0), vocabulary, _as_written), text)


# Phrases where the words for people are harmless: removed before looking for a request for a human.
_LOOK_ALIKES = re.compile(
    r"user[- ]agents?|monitoring agents?|\w+ agent (install|version|config)\w*|(sales|account) rep(resentative)?s?"
    r"|human[- ]resources|human[- ]readable|person[- ]level|per (support )?agents?|by humans|humans vs"
    r"|['\"](agent|operator|human|person|representative)['\"]|(agent|operator) (column|field|dropdown|filter)"
    r"|i'?m a real person|i am a real person|(a|one|each|every|the) person (on|in|from) (my|our|the) (team|workspace)"
    r"|one person|representative sample|(add|invite|remove|delete) (a|the|this|that|another) (person|user|human)"
    r"|human[- ]in[- ]the[- ]loop"
)
_STRONG_HUMAN = re.compile(
    r"\b(humans?|human beings?|(real|live|actual) (support )?(person|people|humans?|agents?|reps?|representatives?)"
    r"|(support|service|customer service|customer support) (person|people|agents?|reps?|representatives?|engineers?"
    r"|staff|team)|customer (service|support)|representatives?|operators?|live (chat|support)"
    r"|(someone|somebody|anyone|anybody|member|one) (from|on|at|of) (your|the|acme)\b"
    r"|(someone|somebody|anyone|anybody) (real|human)|phone support"
    r"|your (support )?(team|staff)|support (team|staff))\b"
)
_WEAK_HUMAN = re.compile(
    r"\b(talk|speak|chat|connect|transfer|put|hand|reach|want|need|like|prefer|rather|get|give|escalate|call|phone)\b"
    r"( me| us| this| it| over| through| in touch)*( to| with)?( to| with)?( a| an| the| some| your| one)?"
    r"( real| live| actual| human| support)* (person|people|agents?|someone|somebody|rep)\b"
)
_INTENT = re.compile(
    r"\b(talk|speak|chat|connect|transfer|put (me|us)|hand (me|us|this|it)|escalate|get (me|a|an|some)|give me"
    r"|want|need|like|prefer|rather|reach|contact (me|us)|call (me|us)|in touch|assistance|is there|are there"
    r"|is anyone|anyone there|who can|may i|can i|(can|could) (someone|somebody|anyone|anybody)"
    r"|now|asap|please|pls|plz)\b"
)
_SHORT_POLITE = re.compile(r"^(please |pls |plz )?(talk to |speak to |a |an )?(real |live )?"
                           r"(human|agent|person|representative|operator|support)( please| pls| plz| now| asap)?$")
_NOT_A_BOT = re.compile(r"\b(stop the bot|not a bot|no bots?|don'?t want (the|a|this) bot|not (a|the|this) robot)\b")


def asks_for_human(text: str) -> str | None:
    """The phrase asking for a person in a (normalized) message, or None."""
    cleaned = _LOOK_ALIKES.sub(" ", text)
    bare = re.sub(r"[^a-z' ]", " ", cleaned)
    bare = re.sub(r"\s+", " ", bare).strip()
    if _SHORT_POLITE.match(bare):
        return bare
    strong = _STRONG_HUMAN.search(cleaned)
    if strong and (_INTENT.search(cleaned) or len(bare.split()) <= 4):
        return strong.group(0)
    weak = _WEAK_HUMAN.search(cleaned)
    if weak:
        return weak.group(0)
    not_bot = _NOT_A_BOT.search(cleaned)
    return not_bot.group(0) if not_bot else None


_FAILURE = re.compile(
    r"\b(did ?n'?t|does ?n'?t|do ?n'?t|did not|does not|do not|not|no|never|was ?n'?t|is ?n'?t|wo ?n'?t)\b"
    r"[^.!?]{0,20}\b(help|helped|helpful|helping|work|works|working|worked|fix|fixed|solve|solved|change|changed)\b"
    r"|\bstill\b|\bsame (error|problem|issue|thing|result)\b|\bno (luck|change|difference)\b"
    r"|\bthat'?s not it\b|\bthats not it\b|\bnope\b|\buseless\b|\bnot (helpful|right|correct)\b"
)
_SUCCESS = re.compile(
    r"\b(that|this|it|which|switching|restarting|the new \w+) (fixed|solved|worked|did it|helped)\b"
    r"|\b(fixed|solved|working|works|resolved) now\b|\bthat was it\b|\bperfect\b|\bgot it\b|\bnew \w+ works\b"
)


def is_failure_report(text: str) -> bool:
    """True when a (normalized) follow-up says the previous answer did not help."""
    return bool(_FAILURE.search(text)) and not _SUCCESS.search(text)


# Words the detector itself looks for: a reading (leetspeak, spelled-out letters) must spell one of these
# or a rule's word to be accepted.
BASE_VOCABULARY = Vocabulary.of(
    {word for pattern in (_LOOK_ALIKES, _STRONG_HUMAN, _WEAK_HUMAN, _INTENT, _SHORT_POLITE, _NOT_A_BOT,
                          _FAILURE, _SUCCESS) for word in pattern_words(pattern.pattern)}
    | set(_VOCABULARY) | FUNCTION_WORDS
)


@lru_cache(maxsize=8)
def vocabulary_for(rules: tuple[PolicyRule, ...], languages: tuple[LanguageRules, ...] = ()) -> Vocabulary:
    """The detector's words and every word the policy rules' and language files' expressions spell."""
    every = [*rules, *(rule for language in languages for rule in _language_rules(language))]
    patterns = [pattern for rule in every for pattern in (*rule.match, *rule.unless)]
    return BASE_VOCABULARY | Vocabulary.of({word for pattern in patterns for word in pattern_words(pattern.pattern)})


@lru_cache(maxsize=8)
def foreign_words(languages: tuple[LanguageRules, ...]) -> frozenset[str]:
    """The words the languages' expressions spell: never read as misspelled English ("compromis", "agente")."""
    patterns = [pattern for language in languages for rule in _language_rules(language)
                for pattern in (*rule.match, *rule.unless)]
    return frozenset(word for pattern in patterns for word in pattern_words(pattern.pattern) if len(word) >= 4)


def _language_rules(language: LanguageRules) -> Iterable[PolicyRule]:
    yield from (rule for rule in (language.human_request, language.failure) if rule is not None)
    yield from language.policies


def _similar(a: str, b: str) -> bool:
    words_a, words_b = set(_TOKEN.findall(a)), set(_TOKEN.findall(b))
    if len(words_a) < 3 or len(words_b) < 3:
        return a == b
    return len(words_a & words_b) / len(words_a | words_b) >= 0.8


HUMAN_REQUEST_RULE = "human_request"
FAILURE_RULE = "failure"


@lru_cache(maxsize=8)
def _families(languages: tuple[LanguageRules, ...]) -> dict[str, tuple[tuple[str, PolicyRule], ...]]:
    """The languages' rules grouped by what they detect (human_request, failure, policy:<name>), with their code."""
    families: dict[str, list[tuple[str, PolicyRule]]] = {}
    for language in languages:
        for key, rule in ((HUMAN_REQUEST_RULE, language.human_request), (FAILURE_RULE, language.failure),
                          *((POLICY_PREFIX + r.name, r) for r in language.policies)):
            if rule is not None:
                families.setdefault(key, []).append((language.code, rule))
    return {key: tuple(rules) for key, rules in families.items()}


def _family_match(rules: Sequence[tuple[str, PolicyRule]], folded: str) -> tuple[str, str] | None:
    """(language, phrase) of the first of one family's rules that matches `folded`, unless any of theirs does.

    A look-alike written down in one language protects the message from the same rule in every language:
    Spanish "informe de reembolsos" is a report to the Portuguese refund rule too.
    """
    for code, rule in rules:
        found = rule.first_match(folded)
        if found:
            # (the exclusions only after a match: most messages match nothing, and cost no more)
            vetoed = any(exclusion.search(folded) for _, other in rules for exclusion in other.unless)
            return None if vetoed else (code, found.group(0))
    return None


def _says_it_failed(text: str, folded: str, languages: Sequence[LanguageRules]) -> bool:
    """An English "did not help" in the normalized text, or one of the languages' in the folded text."""
    return is_failure_report(text) or (
        bool(languages) and _family_match(_families(tuple(languages)).get(FAILURE_RULE, ()), folded) is not None)


def count_failures(
    history: Sequence[Turnlet], current: str, languages: Sequence[LanguageRules] = (), current_folded: str = "",
) -> int:
    """Consecutive user follow-ups, ending with `current`, that report the bot's answer did not help.

    A follow-up counts when it says so ("that didn't help", "still broken", or in the words of one of
    `languages`: "hat nicht geholfen") or repeats the previous question; only messages that come after a
    reply count. `current_folded` is the current message as `fold` reads it (needed with `languages`).
    """
    vocabulary = vocabulary_for((), tuple(languages)) if languages else None
    users: list[tuple[str, str, bool]] = []  # (normalized text, folded text, came after a reply)
    answered = False
    for message in history:
        if message.role == "user":
            folded = fold(message.content, vocabulary) if languages else ""
            users.append((normalize(message.content, None, foreign_words(tuple(languages))), folded, answered))
            answered = False
        else:
            answered = True
    users.append((current, current_folded, answered))
    count = 0
    for index in range(len(users) - 1, -1, -1):
        text, folded, after_reply = users[index]
        repeated = index > 0 and _similar(text, users[index - 1][0])
        if not after_reply or not (_says_it_failed(text, folded, languages) or repeated):
            break
        count += 1
    return count


def detect_before(
    content: str, history: Sequence[Turnlet], rules: Sequence[PolicyRule], *, failures_to_escalate: int,
    top_hit: tuple[KnownIssue, float] | None = None, min_score: float = 0.0,
    languages: Sequence[LanguageRules] = (),
) -> EscalationSignal | None:
    """Deterministic signals on the user's message: asked for a human, a policy topic, repeated failure.

    The English detector and `rules` read the normalized message; the rules of `languages` (every other
    configured language's file) read it folded, accents removed.
    """
    text = normalize(content, vocabulary_for(tuple(rules)), foreign_words(tuple(languages)))
    folded = fold(content, vocabulary_for(tuple(rules), tuple(languages))) if languages else ""
    signal = _asked_for_person(text, folded, languages) or _policy_topic(text, folded, rules, languages)
    if signal is not None:
        return signal
    if top_hit is not None:
        issue = _escalating_issue(top_hit, text, min_score)
        if issue is not None:
            return EscalationSignal(POLICY_PREFIX + "known-issue",
                                    detail=f"known issue '{issue.title}' is marked escalate: true")
    failures = count_failures(history, text, languages, folded)
    if failures >= failures_to_escalate:
        return EscalationSignal(REPEATED_FAILURE, detail=f"{failures} follow-ups in a row said it did not help")
    return None


def _asked_for_person(text: str, folded: str, languages: Sequence[LanguageRules]) -> EscalationSignal | None:
    phrase = asks_for_human(text)
    if phrase:
        return EscalationSignal(USER_REQUEST, detail=f"asked for a person: {phrase!r}")
    matched = _family_match(_families(tuple(languages)).get(HUMAN_REQUEST_RULE, ()), folded) if languages else None
    if matched:
        return EscalationSignal(USER_REQUEST, detail=f"asked for a person ({matched[0]}): {matched[1]!r}")
    return None


def _policy_topic(
    text: str, folded: str, rules: Sequence[PolicyRule], languages: Sequence[LanguageRules],
) -> EscalationSignal | None:
    for rule in rules:
        matched = rule.matches(text)
        if matched:
            return EscalationSignal(POLICY_PREFIX + rule.name, detail=f"{rule.description} (matched {matched!r})")
    described = {POLICY_PREFIX + rule.name: rule.description for rule in rules}
    for key, family in _families(tuple(languages)).items() if languages else ():
        found = _family_match(family, folded) if key.startswith(POLICY_PREFIX) else None
        if found:
            return EscalationSignal(key, detail=f"{described.get(key, key)} (matched {found[1]!r}, {found[0]})")
    return None


def _escalating_issue(top_hit: tuple[KnownIssue, float], text: str, min_score: float) -> KnownIssue | None:
    """An `escalate: true` entry the message is clearly about: the best match, naming one of its keywords.

    Similarity alone is too loose for a handover ("this invoice looks wrong" resembles "charged twice"),
    so one of the entry's own keyword phrases must appear in the message too.
    """
    issue, score = top_hit
    if not issue.escalate or score < min_score:
        return None
    named = any(re.search(rf"\b{re.escape(keyword.lower())}\b", text) for keyword in issue.keywords)
    return issue if named else None


def detect_after(completion: Completion) -> EscalationSignal | None:
    """Signals in the provider's answer: the escalate_to_human tool call, or no matching knowledge."""
    for call in completion.tool_calls:
        if call.name != ESCALATE_TOOL_NAME:
            continue
        try:
            arguments = call.parsed_arguments()
        except ValueError as error:
            # Bad arguments never cancel the handover: the model asked for a human.
            log.warning("escalate_to_human called with invalid arguments (%s); escalating anyway", error)
            return EscalationSignal(MODEL_DECISION, detail="tool call with invalid arguments")
        return EscalationSignal(
            MODEL_DECISION,
            detail=_text(arguments.get("reason")),
            summary=_text(arguments.get("summary")),
        )
    if completion.no_answer:
        return EscalationSignal(NO_ANSWER, detail="no known issue matched the question")
    return None


def _text(value: object) -> str | None:
    return (value.strip()[:2000] or None) if isinstance(value, str) else None
