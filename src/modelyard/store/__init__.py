"""The relational store shared by the registry and, later, the request log, API keys and eval runs."""
