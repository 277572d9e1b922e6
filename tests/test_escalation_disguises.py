"""Escalation that can't be dodged (issue 13): disguised requests escalate, look-alikes stay with the bot."""

from __future__ import annotations

import pytest

from service.config import PROJECT_ROOT
from service.escalation import Turnlet, count_failures, detect_before, normalize, vocabulary_for
from service.policies import PolicyRule, PolicyStore, parse_policy_text


def _rules() -> tuple[PolicyRule, ...]:
    return PolicyStore(PROJECT_ROOT / "knowledge", interval=0).rules()


def _reason(text: str, rules: tuple[PolicyRule, ...] | None = None) -> str | None:
    signal = detect_before(text, [], _rules() if rules is None else rules, failures_to_escalate=2)
    return signal.reason if signal else None


@pytest.mark.parametrize(("text", "reason"), [
    ("c4n i t4lk t0 a hum4n", "user_request"),
    ("I need a r3fund for the duplicate invoice", "policy:refund"),
    ("my l4wyer has the emails", "policy:legal"),
    ("our admin account got h4ck3d", "policy:security"),
    ("you will hear from my 1awyer", "policy:legal"),
    ("c@ncel my subscr1ption", "policy:cancellation"),
])
def test_leetspeak_does_not_dodge_escalation(text: str, reason: str) -> None:
    assert _reason(text) == reason


@pytest.mark.parametrize(("text", "reason"), [
    ("r e f u n d", "policy:refund"),
    ("I want a r.e.f.u.n.d for May", "policy:refund"),
    ("r-e-f-u-n-d the seats", "policy:refund"),
    ("h u m a n please", "user_request"),
    ("H U M A N  N O W", "user_request"),
    ("i want a r e f u n d", "policy:refund"),
    ("a l4wyer? y.e.s, l.a.w.y.e.r", "policy:legal"),
    ("re-fund please", "policy:refund"),
    ("we filed a charge-back", "policy:refund"),
])
def test_spelled_out_letters_do_not_dodge_escalation(text: str, reason: str) -> None:
    assert _reason(text) == reason


@pytest.mark.parametrize(("text", "reason"), [
    ("I want my mon\u200bey back", "policy:refund"),  # zero-width space
    ("talk to a hu\u200dman", "user_request"),  # zero-width joiner
    ("expect a law\u00adsuit", "policy:legal"),  # soft hyphen
    ("we will s\u200bu\u200be", "policy:legal"),
    ("I want a r\u0435fund", "policy:refund"),  # Cyrillic e
    ("\u0441\u0430ncel my subscription", "policy:cancellation"),  # Cyrillic s, a
    ("let me speak to a hum\u0430n", "user_request"),
    ("\uff32\uff25\uff26\uff35\uff2e\uff24 please", "policy:refund"),  # full-width REFUND
])
def test_invisible_look_alike_and_wide_characters_do_not_dodge_escalation(text: str, reason: str) -> None:
    assert _reason(text) == reason


@pytest.mark.parametrize("text", [
    "I'd like to be reimbursed for March", "please reimburse me for the extra seats",
    "We are asking for a reimbursement of the setup fee", "Can you reverse the payment from Friday?",
    "please reverse the charge on my card", "just give me my money back", "credit my card back please",
    "credit it back to my card", "pay us back for the outage", "we expect to be compensated for the downtime",
])
def test_refund_synonyms_escalate(text: str) -> None:
    assert _reason(text) == "policy:refund"


@pytest.mark.parametrize("text", [
    "someone took over my account", "my account was taken over yesterday",
    "someone changed my password and email", "I'm locked out after someone changed my email",
    "account hijacked", "somebody hijacked our workspace login", "my email was changed and it wasn't me",
])
def test_account_takeover_escalates(text: str) -> None:
    assert _reason(text) == "policy:security"


@pytest.mark.parametrize("text", [
    "Our customer Sue Miller asked for a copy of her invoice", "Can Sue get admin access?",
    "Sue's dashboard is empty since Monday", "general counsel wants an invoice copy",
    "Our attorney needs a copy of the signed DPA", "I found you on hacker news, how do I embed a chart?",
    "The chart is packed with labels", "Our data layer is backed up, will the sync retry?",
    "How do I reverse a sort order?", "How do I take over a teammate's dashboards when they leave?",
    "How do I export the reimbursement report?", "How do I change my password?",
    "Can someone reset my password?", "The 4k export is blurry", "v3 of the API returns 401",
    "how do I s.o.r.t by date", "Our plan is the S.M.B. tier", "Do you apply the reverse charge for EU VAT?",
    "Please forward this to our legal counsel with the renewal contract", "The employee compensation dashboard is slow",
    "e-mail me the invoice", "sign-in with SSO fails",
])
def test_look_alikes_stay_with_the_bot(text: str) -> None:
    assert _reason(text) is None


@pytest.mark.parametrize(("text", "reason"), [
    ("I'll sue you", "policy:legal"), ("IM GOING TO SUE YOU", "policy:legal"),
    ("I Want A Refund", "policy:refund"), ("I want a Refund", "policy:refund"), ("Talk To A Human", "user_request"),
    ("my lawyer will be in touch", "policy:legal"), ("our counsel will be in touch", "policy:legal"),
    ("Sue Miller says we will sue you", "policy:legal"),
    ('I clicked "Talk to a human" and nothing happened', "user_request"),
    ("I will Sue you", "policy:legal"), ("Please delete all Data about me", "policy:privacy"),
    ("Can I talk to someone from Acme?", "user_request"),
])
def test_capitals_and_roles_do_not_hide_real_requests(text: str, reason: str) -> None:
    assert _reason(text) == reason


def test_normalize_reads_disguises_and_leaves_everything_else_as_written() -> None:
    assert normalize("R.E.F.U.N.D  n0w!!") == "refund now!!"
    assert normalize("h4ck3d by a hacker") == "hacked by a hacker"
    assert normalize("A B C test in 4k, v3") == "a b c test in 4k, v3"
    assert normalize("Our customer Sue Miller", vocabulary_for(_rules())) == "our customer _sue miller"
    assert normalize("can i speek to a humen") == "can i speak to a human"


def test_leetspeak_in_follow_ups_still_counts_as_failure() -> None:
    history = [Turnlet("user", "Export fails"), Turnlet("assistant", "Check the size limit."),
               Turnlet("user", "d1dn't h3lp"), Turnlet("assistant", "Split by date.")]

    assert count_failures(history, normalize("st1ll n0t w0rk1ng")) == 2


def test_readings_follow_the_rule_file() -> None:
    rules = parse_policy_text("rules:\n  - name: escrow\n    match: ['\\bescrow\\b']\n", "policies.yaml")

    assert _reason("release the 3scr0w now", rules) == "policy:escrow"
    assert _reason("release the e s c r o w", rules) == "policy:escrow"
    assert normalize("release the 3scr0w now") == "release the 3scr0w now"  # no rule, no reading
