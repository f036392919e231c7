"""Metrics, logs and (later) traces: how operators see what the gateway and engines are doing."""
