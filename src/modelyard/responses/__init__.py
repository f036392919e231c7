"""Stored responses of the Responses API: per key, kept for a configurable time, read for ``previous_response_id``."""
