"""Guardrails: pure detectors (PII, secrets, prompt injection), the per-route config, and the input and output
filters (the output filter also works on SSE streams, with a hold-back window)."""
