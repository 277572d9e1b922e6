"""The fixed texts a visitor may see (handoff, acknowledgement, apologies), in the visitor's language.

A language file's `texts:` (knowledge/languages/<code>.yaml) give each language's; a missing one falls back to
English. For English, a SUPPORTBOT_*_REPLY setting the operator set wins over en.yaml, which wins over the
built-in default.
"""

from __future__ import annotations

from collections.abc import Callable

from .config import Settings

ENGLISH = "en"
# The texts with a SUPPORTBOT_*_REPLY setting, by key.
SETTINGS_KEYS = {
    "handoff": "handoff_reply",
    "escalated_ack": "escalated_ack_reply",
    "model_unavailable": "model_unavailable_reply",
    "budget": "budget_reply",
    "leak": "leak_reply",
}
BUILT_IN = {
    "interrupted": "(This answer was interrupted. A member of our team will follow up here.)",
    "no_answer": "I could not find an answer to that in our knowledge base, so I am passing your question to a "
                 "member of our support team.",
    "wrong_language": "I'm sorry, our help articles are written in another language, so I can't answer this "
                      "myself. I'm passing your question to a member of our support team, who will reply here.",
    # Actions (service/actions/): a lookup that needs a signed-in visitor, one that failed, one to confirm.
    "action_sign_in": "To look that up I need to know it's you. Please sign in to your account, then ask me again "
                      "here.",
    "action_failed": "I'm sorry, I couldn't look that up right now. I'm passing your question to a member of our "
                     "support team, who will reply here.",
    "action_confirm": "Before I go ahead, please confirm: {summary}",
    "action_confirm_label": "Yes, go ahead.",  # the visitor's message when they press Confirm
    "action_cancel_label": "No, don't do it.",  # ... and Cancel
}

Lookup = Callable[[str, str], str | None]  # (language code, key) -> the language file's text, if any


def _no_files(_code: str, _key: str) -> str | None:
    return None


class FixedTexts:
    """Picks each fixed text for a language: its file, else English (setting, en.yaml, built-in)."""

    def __init__(self, english: dict[str, str], operator_set: frozenset[str], lookup: Lookup = _no_files) -> None:
        self._english = english
        self._operator_set = operator_set
        self._lookup = lookup

    @classmethod
    def from_settings(cls, settings: Settings, lookup: Lookup = _no_files) -> FixedTexts:
        """The texts with the settings' English ones (those set in the environment win over en.yaml)."""
        english = {**BUILT_IN, **{key: str(getattr(settings, name)) for key, name in SETTINGS_KEYS.items()}}
        chosen = frozenset(key for key, name in SETTINGS_KEYS.items() if name in settings.model_fields_set)
        return cls(english, chosen, lookup)

    def get(self, key: str, language: str | None) -> str:
        """The text `key` in `language` (None = English)."""
        code = language or ENGLISH
        if code != ENGLISH:
            text = self._lookup(code, key)
            if text:
                return text
        if key in self._operator_set:
            return self._english[key]
        return self._lookup(ENGLISH, key) or self._english[key]
