"""Inference engines: how they are built, launched and supervised. The gateway only sees their HTTP endpoints."""
