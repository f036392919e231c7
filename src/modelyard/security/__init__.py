"""Security and governance: API keys, scopes, rate limits, budgets, request limits, guardrails, audit log.

Everything a request consults lives in memory (the key snapshot, the limiter, the guardrail config); the database
and Redis are reached off the hot path (snapshot poller, batched spend writer) or asynchronously with a bounded
timeout (Redis limiter). See docs/security.md.
"""
