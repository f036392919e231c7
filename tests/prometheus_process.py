"""Run a real Prometheus server (Debian's ``prometheus``, installed by scripts/system-deps.sh) for end-to-end tests.

Scrapes every second and evaluates rules every second, so a test sees its traffic in Prometheus within seconds.
The process dies with the test run (``kill_with_parent``) and is stopped by whoever started it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from modelyard.engines.process import kill_with_parent

from gateway_process import free_port

JOB = "modelyard"  # the scrape job name the shipped alert rules expect (docs/observability.md)


class PrometheusProcess:
    def __init__(self, work_dir: Path, scrape_target: str, rule_files: list[Path]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:  # not a skip: the project's set-up (scripts/system-deps.sh) must have installed it
            raise RuntimeError("prometheus is not installed: run `make setup` (scripts/system-deps.sh installs it)")
        work_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {  # JSON is YAML
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [scrape_target]}]}],
        }
        config_path = work_dir / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2))
        self.log_path = work_dir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={work_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=kill_with_parent,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.wait_for(lambda: self._get("/-/ready", raw=True), "Prometheus to be ready", timeout)

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; raises with Prometheus's own error text when the expression is invalid."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        response = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"query failed ({response.status_code}): {body.get('error')}\n{expr}")
        assert body["data"]["resultType"] == "vector", expr
        return body["data"]["result"]

    def scalar(self, expr: str) -> float | None:
        """The value of a query that yields one series, or None when it yields none."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def label_values(self, label: str, match: str) -> set[str]:
        """What Grafana's ``label_values(match, label)`` variable query shows."""
        return set(self._get(f"/api/v1/label/{label}/values", params={"match[]": match}))

    def rule_groups(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/rules")["groups"]

    def targets(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/targets")["activeTargets"]

    def wait_for(self, check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        """Poll ``check`` until it returns something truthy (errors count as not yet)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
            try:
                result = check()
            except (httpx.HTTPError, AssertionError, KeyError, IndexError, ValueError) as exc:
                result, last = None, exc
            if result:
                return result
            time.sleep(0.2)
        raise TimeoutError(f"waited {timeout} s for {what} (last error: {last!r})\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def _get(self, path: str, params: dict[str, str] | None = None, raw: bool = False) -> Any:
        response = httpx.get(self.url + path, params=params, timeout=10)
        response.raise_for_status()
        if raw:
            return True
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]
