"""The one place where the failures of modelyard's concepts become client-visible errors, for every API.

The registry, the key store, the request log's query parser, the eval gates and the config loaders raise their
own exceptions, which say what is wrong without knowing about HTTP. This mapping gives each kind its status and
code from the error vocabulary (``errors.py``); anything it does not know stays a bug (a 500 with the request id,
and a log line).
"""

from __future__ import annotations

from modelyard.batches.store import BatchNotFound, BatchRequestError
from modelyard.errors import (
    APIError,
    conflict,
    invalid_deployments,
    invalid_field,
    invalid_request,
    invalid_value,
    not_found,
    not_your_request,
    promotion_gate_failed,
    store_unavailable,
)
from modelyard.evals.suite import SuiteError
from modelyard.observability.request_query import QueryError
from modelyard.registry.errors import Conflict, InvalidRequest, NotFound, PromotionGateFailed, RegistryError
from modelyard.responses.store import ResponseNotFound
from modelyard.rollouts.feedback import FeedbackError, NotYourRequest, UnknownRequest
from modelyard.rollouts.plan import PlanError
from modelyard.rollouts.store import RolloutConflict, RolloutNotFound
from modelyard.routing.config import DeploymentsError
from modelyard.security.guardrails.config import GuardrailConfigError
from modelyard.security.key_store import KeyRequestError, UnknownKey
from modelyard.store.database import StoreUnavailable


def to_api_error(exc: Exception) -> APIError | None:
    """The client-visible error for a concept's failure, or None when ``exc`` is not one (a bug)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, RegistryError):
        return _registry(exc)
    if isinstance(exc, UnknownKey):
        return not_found(exc.message, exc.param)
    if isinstance(exc, KeyRequestError):
        return invalid_value(exc.message, exc.param)
    if isinstance(exc, QueryError):
        return invalid_value(str(exc), exc.param)
    if isinstance(exc, SuiteError):
        return invalid_value(str(exc), "gates")
    if isinstance(exc, GuardrailConfigError):
        return invalid_value(str(exc))
    if isinstance(exc, DeploymentsError):
        return invalid_deployments(str(exc), exc.path or None)
    if isinstance(exc, ResponseNotFound | BatchNotFound):
        return not_found(str(exc), "id")
    if isinstance(exc, BatchRequestError):
        return invalid_value(exc.message, exc.param)
    if isinstance(exc, PlanError):
        return invalid_field(f"plan.{exc}", f"plan.{exc.key}")
    if isinstance(exc, RolloutNotFound):
        return not_found(str(exc), "rollout")
    if isinstance(exc, RolloutConflict):
        return conflict(str(exc), exc.param)
    if isinstance(exc, FeedbackError):
        return invalid_field(str(exc), exc.field)
    if isinstance(exc, UnknownRequest):
        return not_found(str(exc), "request_id")
    if isinstance(exc, NotYourRequest):
        return not_your_request(str(exc))
    if isinstance(exc, StoreUnavailable):
        return store_unavailable(str(exc))
    return None


def _registry(exc: RegistryError) -> APIError:
    if isinstance(exc, PromotionGateFailed):
        return promotion_gate_failed(exc.message, exc.param)
    if isinstance(exc, NotFound):
        return not_found(exc.message, exc.param)
    if isinstance(exc, Conflict):
        return conflict(exc.message, exc.param)
    if isinstance(exc, InvalidRequest):
        return invalid_value(exc.message, exc.param)
    return invalid_request(exc.message, exc.param)
