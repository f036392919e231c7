"""Turning what the registry says into running engines and the gateway's catalog."""
