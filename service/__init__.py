"""supportbot: a support chatbot service steered by versioned prompts and a known-issues file."""

__version__ = "0.1.0"
