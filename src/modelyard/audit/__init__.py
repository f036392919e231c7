"""The tamper-evident audit log every concept appends its changes to."""
