"""Fine-tuning: the one boundary to fine-tuning APIs (OpenAI-compatible, or an operator's command)."""

from __future__ import annotations

from .base import STATES, TERMINAL, FineTuneBackend, FineTuneRefused, JobState, backend_for

__all__ = ["STATES", "TERMINAL", "FineTuneBackend", "FineTuneRefused", "JobState", "backend_for"]
