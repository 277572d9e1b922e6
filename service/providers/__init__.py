"""The model boundary: one interface (base.py), the adapters behind it, and the wrapper that keeps answers flowing.

- base.py: ChatRequest, Completion, TextDelta, the Provider protocol and the escalation tool.
- openai_compat.py: any OpenAI-compatible chat completions endpoint (hosted, fine-tuned, self-hosted).
- offline.py: answers from the knowledge base alone (no key, no network, or the hosted model down).
- resilient.py: a time budget, a circuit breaker and an optional fallback model around the hosted one.

Each stored message records who authored it (`Message.origin`: visitor, model, fixed text, agent), so review,
inbox, report and export never filter by a provider's name.
"""
