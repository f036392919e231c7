"""Registry failures: what went wrong, in words, and which field of the request it was about.

They carry no HTTP status: the APIs that expose the registry map each kind onto the error vocabulary in one place
(``api/problems.py``), and the CLI prints the message.
"""

from __future__ import annotations


class RegistryError(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(RegistryError):
    """A name, reference or value the registry cannot accept."""


class NotFound(RegistryError):
    """No such model, version or alias."""


class Conflict(RegistryError):
    """The registry's state does not allow the change (an alias moved meanwhile, an archived version, …)."""


class PromotionGateFailed(Conflict):
    """Moving a gated alias was refused by the model's promotion gates; ``gates`` lists the failed ones."""

    def __init__(self, message: str, gates: list[dict[str, object]] | None = None) -> None:
        super().__init__(message, param="version")
        self.gates = gates or []
