"""What one running gateway process owns: its engines, its upstream client, its catalog and metrics.

Built from settings before the event loop starts; :meth:`Runtime.start` and :meth:`Runtime.stop` are called
from the ASGI lifespan so that every resource lives inside the loop that serves requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelyard.engines.llamacpp_build import EngineBuild
from modelyard.engines.llamacpp_server import LlamaServerConfig
from modelyard.engines.supervisor import EngineState, EngineSupervisor, RestartPolicy
from modelyard.gateway.catalog import ModelCatalog, ServedModel
from modelyard.gateway.handlers import InferenceHandlers, RequestLimits
from modelyard.gateway.proxy import Proxy
from modelyard.gateway.upstream_client import UpstreamClientSettings, create_session
from modelyard.observability.metrics import GatewayMetrics

log = logging.getLogger("modelyard")


@dataclass(frozen=True)
class LocalModel:
    """A GGUF served by a llama-server that this gateway launches."""

    name: str
    aliases: tuple[str, ...]
    engine: LlamaServerConfig


class Runtime:
    def __init__(
        self,
        build: EngineBuild,
        models: list[LocalModel],
        limits: RequestLimits,
        policy: RestartPolicy,
        log_dir: Path,
        on_engine_failed: Callable[[str], None] | None = None,
    ) -> None:
        self.metrics = GatewayMetrics()
        self._on_engine_failed = on_engine_failed
        self.supervisors: list[EngineSupervisor] = []
        served = []
        created = int(time.time())
        for model in models:
            supervisor = EngineSupervisor(
                name=model.name,
                command=lambda port, engine=model.engine: engine.argv(build.binary("llama-server"), port),
                log_path=log_dir / f"engine-{model.name}.log",
                policy=policy,
                on_change=self._engine_changed,
            )
            self.supervisors.append(supervisor)
            served.append(
                ServedModel(
                    name=model.name,
                    upstream=supervisor,
                    aliases=model.aliases,
                    created=created,
                    embeddings=model.engine.embeddings,
                )
            )
        self._catalog = ModelCatalog(served)
        self._proxy = Proxy(self.metrics)
        self.handlers = InferenceHandlers(self.catalog, self._proxy, self.metrics, limits)

    def catalog(self) -> ModelCatalog:
        return self._catalog

    @property
    def ready(self) -> bool:
        return bool(self.supervisors) and all(s.ready for s in self.supervisors)

    async def start(self) -> None:
        self._proxy.session = create_session(UpstreamClientSettings())
        for supervisor in self.supervisors:
            supervisor.start()

    async def stop(self) -> None:
        for supervisor in self.supervisors:
            await supervisor.stop()
        if self._proxy.session is not None:
            await self._proxy.session.close()

    def _engine_changed(self, supervisor: EngineSupervisor) -> None:
        self.metrics.engine_state_changed(supervisor.name, supervisor.ready, supervisor.restarts)
        if supervisor.state == EngineState.FAILED and self._on_engine_failed is not None:
            self._on_engine_failed(supervisor.name)
