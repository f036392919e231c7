"""Which LoRA adapters each running base engine must hold, and how it gets there (pure; the reconciler acts).

Every adapter the deployments serve on one base version shares that base's engines. The two engine kinds differ
in what they can change while running:

- llama.cpp loads its adapters at launch (``--lora``, numbered in order) and cannot load more later: a base whose
  wanted adapters are not all loaded is relaunched with the new set (the old process keeps serving until the new
  one is ready, then drains). Adapters no longer wanted stay loaded at scale 0 (no relaunch just to drop one).
- vLLM launched with ``--enable-lora`` loads and unloads adapters at run time (``/v1/load_lora_adapter``); only a
  base launched without LoRA support is relaunched, when it first needs an adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AdapterPlan:
    relaunch: frozenset[str] = frozenset()  # base keys whose engines are replaced by ones launched with ``sets``
    load: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # vLLM: adapters to load now, by base
    unload: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # vLLM: adapters to unload after the swap
    sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # base key → adapters its engines will hold


def plan_adapters(
    running: Mapping[str, str],
    current: Mapping[str, tuple[str, ...]],
    wanted: Mapping[str, tuple[str, ...]],
    lora_enabled: Set[str],
) -> AdapterPlan:
    """``running``: base key → engine kind of the bases that have engines now; ``current``: the adapters they
    hold; ``wanted``: what the deployments serve on each base; ``lora_enabled``: vLLM bases launched with LoRA.
    Bases without engines yet are launched with their wanted set (in ``sets`` too)."""
    relaunch: set[str] = set()
    load: dict[str, tuple[str, ...]] = {}
    unload: dict[str, tuple[str, ...]] = {}
    sets: dict[str, tuple[str, ...]] = {}
    for key in sorted(set(running) | set(wanted)):
        want = wanted.get(key, ())
        have = current.get(key, ())
        if key not in running:
            sets[key] = want
            continue
        if running[key] == "vllm":
            if want and key not in lora_enabled:
                relaunch.add(key)
                sets[key] = want
                continue
            new = tuple(a for a in want if a not in have)
            gone = tuple(a for a in have if a not in want)
            if new:
                load[key] = new
            if gone:
                unload[key] = gone
            sets[key] = tuple(sorted({*have, *want})) if new or gone else have
            continue
        if all(a in have for a in want):
            sets[key] = have  # ids stay as launched; unwanted ones idle at scale 0
        else:
            relaunch.add(key)
            sets[key] = want
    return AdapterPlan(frozenset(relaunch), load, unload, sets)


def after_unload(
    sets: Mapping[str, tuple[str, ...]], unload: Mapping[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """The sets once the unloads of a plan are done."""
    return {key: tuple(a for a in held if a not in unload.get(key, ())) for key, held in sets.items()}
