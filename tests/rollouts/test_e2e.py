"""Rollouts for real: ``modelyard serve`` with the default model (Q4_K_M) in production, live traffic, a live eval
score from a small deterministic suite, and synthetic feedback with a known effect.

* The Q2_K variant as candidate, whose answers the simulated users dislike → rolled back automatically, the
  decision naming the metric and its numbers, traffic back on control, production unchanged.
* The same model (its bytes plus padding, so the registry sees a new version) as candidate → it advances; the
  gateway is restarted mid-rollout; the new process resumes at the same step and promotes it through the gates.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = [pytest.mark.engine, pytest.mark.slow]

SUITE = Path(__file__).parent / "data" / "live.yaml"
PROMPTS = [orjson.loads(line)["prompt"] for line in (SUITE.parent / "live.jsonl").read_text().splitlines() if line]
ARGS = ("--parallel", "2", "--ctx-size", "1024", "--request-log-bodies", f"{MODEL}=1")


@dataclass
class Site:
    data_dir: Path
    gateway: GatewayProcess
    q2k: int
    same: int

    def restart(self) -> None:
        self.gateway.stop()
        self.gateway = GatewayProcess(self.data_dir, *ARGS)
        self.gateway.wait_ready()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.gateway.url, timeout=60)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, default_model_path: Path, q2k_model_path: Path) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("rollouts")
    gateway = GatewayProcess(data_dir, *ARGS)
    gateway.wait_ready()
    same = data_dir / "gemma-3-270m-same.gguf"
    shutil.copyfile(default_model_path, same)
    with same.open("ab") as padded:  # new bytes for the registry, the same weights for the engine
        padded.write(b"\0" * 64)
    site = Site(data_dir, gateway, 0, 0)
    try:
        with site.client() as api:
            for path, attr in ((q2k_model_path, "q2k"), (same, "same")):
                answer = api.post("/admin/models", json={"path": str(path), "name": MODEL})
                assert answer.status_code == 201, answer.text
                setattr(site, attr, answer.json()["number"])
        yield site
    finally:
        site.gateway.stop()


def _version(answer: httpx.Response) -> int:
    match = re.search(r"(\d+)$", answer.headers.get("x-modelyard-model-version", ""))
    return int(match.group(1)) if match else 0


def _traffic(site: Site, disliked: int | None, stop: threading.Event, seed: int) -> None:
    """One simulated user: completions of the suite's prompts, and a rating of each answer — down nine times in
    ten for answers of the ``disliked`` version, up nine times in ten otherwise."""
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            with site.client() as client:
                prompt = rng.choice(PROMPTS)
                body = {"model": MODEL, "prompt": prompt, "max_tokens": 8, "temperature": 0}
                answer = client.post("/v1/completions", json=body)
                if answer.status_code != 200:
                    time.sleep(0.2)
                    continue
                happy = rng.random() < 0.9
                liked = not happy if _version(answer) == disliked else happy
                client.post(
                    "/v1/feedback",
                    json={"request_id": answer.headers["x-request-id"], "score": "up" if liked else "down"},
                )
        except httpx.HTTPError:
            time.sleep(0.5)  # the gateway is restarting


@dataclass
class Traffic:
    stop: threading.Event
    threads: list[threading.Thread]

    def end(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def _start_traffic(site: Site, disliked: int | None, users: int = 4) -> Traffic:
    stop = threading.Event()
    threads = [threading.Thread(target=_traffic, args=(site, disliked, stop, i), daemon=True) for i in range(users)]
    for thread in threads:
        thread.start()
    return Traffic(stop, threads)


def _wait(site: Site, rollout_id: int, done: Callable[[dict], bool], timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout
    rollout: dict = {}
    while time.monotonic() < deadline:
        try:
            with site.client() as api:
                rollout = api.get(f"/admin/rollouts/{rollout_id}").json()
        except httpx.HTTPError:
            time.sleep(0.5)
            continue
        if done(rollout):
            return rollout
        time.sleep(0.5)
    raise AssertionError(f"rollout {rollout_id} did not get there: {rollout}\n{site.gateway.log()[-4000:]}")


def _cli(site: Site, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "modelyard", "rollout", *args],
        env={**os.environ, "MODELYARD_DATA_DIR": str(site.data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_a_q2k_candidate_users_dislike_is_rolled_back_by_itself(site: Site) -> None:
    plan = {
        "steps": [50, 100],
        "guardrails": {"feedback": 0.1, "eval_score": 0.5, "error_rate": 0.1},
        "min_sample": 10,
        "step_max_s": 400,
        "look_s": 2,
        "live_eval": {"suite": str(SUITE)},
    }
    with site.client() as api:
        started = api.post("/admin/rollouts", json={"route": MODEL, "candidate": f"{MODEL}:{site.q2k}", "plan": plan})
        assert started.status_code == 201, started.text
        again = api.post("/admin/rollouts", json={"route": MODEL, "candidate": f"{MODEL}:{site.q2k}"})
        assert again.status_code == 409 and "already has an active rollout" in again.text
    rollout_id = started.json()["id"]
    traffic = _start_traffic(site, disliked=site.q2k)
    try:
        rollout = _wait(site, rollout_id, lambda r: r["state"] != "running")
    finally:
        traffic.end()
    assert rollout["state"] == "rolled_back", rollout
    decision = rollout["last_decision"]
    assert decision["action"] == "rollback" and "feedback" in decision["reason"]
    feedback = next(c for c in decision["numbers"]["comparisons"] if c["metric"] == "feedback")
    assert feedback["breach"] and feedback["verdict"] == "worse" and feedback["treatment_n"] >= 10
    assert feedback["treatment_value"] < feedback["control_value"] and feedback["e_value"] >= 20
    live = next(c for c in decision["numbers"]["comparisons"] if c["metric"] == "eval_score")
    assert live["control_n"] >= 10 and live["treatment_n"] >= 10  # the live eval scored both arms
    assert "rolled_back" in _cli(site, "status", str(rollout_id))
    assert "feedback" in _cli(site, "history", str(rollout_id))
    with site.client() as api:
        assert api.get(f"/admin/models/{MODEL}").json()["aliases"]["production"] == 1
        time.sleep(2)  # the split is gone within a second: everything is served by the control again
        served = {_version(api.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 2}))
                  for _ in range(6)}  # fmt: skip
        assert served == {1}
        metrics = api.get("/metrics").text
    assert f'modelyard_rollout_decisions_total{{action="rollback",route="{MODEL}"}} 1.0' in metrics


def test_the_same_model_is_promoted_and_a_restart_resumes_at_its_step(site: Site) -> None:
    plan = {
        "steps": [40, 60, 100],
        "guardrails": {"feedback": 0.5},
        "min_sample": 10,
        "step_max_s": 400,
        "look_s": 2,
    }
    with site.client() as api:
        started = api.post("/admin/rollouts", json={"route": MODEL, "candidate": f"{MODEL}:{site.same}", "plan": plan})
        assert started.status_code == 201, started.text
    rollout_id = started.json()["id"]
    traffic = _start_traffic(site, disliked=None)
    try:
        _wait(site, rollout_id, lambda r: r["step"] == 1 or r["state"] != "running")
        site.restart()  # mid-rollout: the new process must pick the rollout up at its step
        with site.client() as api:
            resumed = api.get(f"/admin/rollouts/{rollout_id}").json()
        assert (resumed["state"], resumed["step"], resumed["share"]) == ("running", 1, 60), resumed
        rollout = _wait(site, rollout_id, lambda r: r["state"] != "running")
    finally:
        traffic.end()
    assert rollout["state"] == "promoted", rollout
    with site.client() as api:
        decisions = api.get(f"/admin/rollouts/{rollout_id}/decisions").json()["data"]
        assert api.get(f"/admin/models/{MODEL}").json()["aliases"]["production"] == site.same
    assert [(d["action"], d["share"]) for d in decisions] == [("start", 40), ("advance", 40), ("promote", 60)]
