"""Loading and unloading LoRA adapters of a running ``vllm serve`` (launched with ``--enable-lora`` and
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``): ``POST /v1/load_lora_adapter`` with ``{"lora_name", "lora_path"}``
and ``POST /v1/unload_lora_adapter`` with ``{"lora_name"}``. A request then names the adapter as its ``model``.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp


class LoraUpdateError(RuntimeError):
    pass


async def load_adapter(base_url: str, name: str, path: Path, timeout_s: float = 120.0) -> None:
    await _post(f"{base_url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)}, timeout_s)


async def unload_adapter(base_url: str, name: str, timeout_s: float = 30.0) -> None:
    await _post(f"{base_url}/v1/unload_lora_adapter", {"lora_name": name}, timeout_s)


async def _post(url: str, body: dict[str, str], timeout_s: float) -> None:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.post(url, json=body) as response,
        ):
            text = await response.text()
            if response.status != 200:
                raise LoraUpdateError(f"{url} answered {response.status}: {text[:500]}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise LoraUpdateError(f"{url}: {exc}") from exc
