"""Registry failures, each carrying the HTTP status and error code the admin API answers with."""

from __future__ import annotations


class RegistryError(Exception):
    status = 400
    code = "invalid_request"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(RegistryError):
    status = 400
    code = "invalid_value"


class NotFound(RegistryError):
    status = 404
    code = "not_found"


class Conflict(RegistryError):
    status = 409
    code = "conflict"


class PromotionGateFailed(RegistryError):
    """Moving a gated alias was refused by the model's promotion gates; ``gates`` lists the failed ones."""

    status = 409
    code = "promotion_gate_failed"

    def __init__(self, message: str, gates: list[dict[str, object]] | None = None) -> None:
        super().__init__(message, param="version")
        self.gates = gates or []
