"""The hot path: parse, validate, resolve the model, proxy or stream, record. No database, no blocking I/O."""
