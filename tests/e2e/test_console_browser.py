"""The web console in a real browser: Debian's Chromium driven by Playwright, against a real ``modelyard serve``
(auth on, a real llama-server with the default model, and a second version made by re-quantizing it).

One gateway and one browser for the module. What a new operator does: fail a login, log in, watch a chart fill
with real traffic, promote a version (a gate refuses, then a forced move with a typed reason), roll back, filter
the request log and open a request, create and revoke a key, read the audit log — and every page is reached by
keyboard and passes axe-core without serious or critical violations. Screenshots are taken of each page; set
``MODELYARD_CONSOLE_SCREENSHOTS=docs/console`` to write them where ``docs/console.md`` shows them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by scripts/system-deps.sh: Playwright downloads no browser
AXE = Path(__file__).resolve().parents[2] / "console-ui" / "node_modules" / "axe-core" / "axe.min.js"
PAGES = ("Overview", "Models", "Routes", "Rollouts", "Requests", "Keys", "Audit")
MIRRORED = "mirrored"  # a declared route whose every request is also sent to version 2 (a shadow copy)
DEPLOYMENTS = f"""
routes:
  {MIRRORED}:
    targets:
      stable: {{model: {MODEL}:1, weight: 1}}
      copy: {{model: {MODEL}:2, weight: 0}}
    shadow: {{target: copy, sample: 1.0}}
"""


class Console:
    def __init__(self, gateway: GatewayProcess, admin_key: str, shots: Path) -> None:
        self.gateway = gateway
        self.url = gateway.url
        self.admin_key = admin_key
        self.shots = shots
        self.api = httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {admin_key}"}, timeout=120)

    def screenshot(self, page: Page, name: str) -> None:
        """Every page a test looks at is also checked by axe-core, then photographed."""
        assert_accessible(page, name)
        path = self.shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        target = os.environ.get("MODELYARD_CONSOLE_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(target) / path.name)

    def chat(self, n: int, model: str = MODEL) -> None:
        for i in range(n):
            body = {"model": model, "messages": [{"role": "user", "content": f"Say hi {i}."}], "max_tokens": 4}
            answer = self.api.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text


def assert_accessible(page: Page, name: str) -> None:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    bad = [
        (v["id"], v["impact"], len(v["nodes"])) for v in result["violations"] if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], f"{name}: {bad}"


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, engine_build: object, default_model_path: Path, q2k_model_path: Path
) -> Iterator[Console]:
    admin_key = "my-" + secrets.token_urlsafe(32)
    data = tmp_path_factory.mktemp("console")
    env = {"MODELYARD_AUTH": "on", "MODELYARD_ADMIN_KEY": admin_key, "MODELYARD_KEY_PEPPER": secrets.token_hex(16)}
    process = GatewayProcess(
        data, "--parallel", "2", "--ctx-size", "2048", "--registry-poll", "0.2", "--request-log-bodies", "*=1", env=env
    )
    try:
        process.wait_ready()
        console = Console(process, admin_key, tmp_path_factory.mktemp("screenshots"))
        registered = console.api.post("/admin/models", json={"path": str(q2k_model_path), "name": MODEL})
        assert registered.status_code == 201, registered.text
        applied = console.api.put(
            "/admin/deployments", content=DEPLOYMENTS, headers={"content-type": "application/yaml"}
        )
        assert applied.status_code == 200, applied.text
        deadline = time.monotonic() + 120
        while not any(e["name"] == f"{MODEL}:2" and e["ready"] for e in process.ready_info().get("engines", [])):
            assert time.monotonic() < deadline, f"version 2's engine never became ready: {process.ready_info()}"
            time.sleep(0.5)
        yield console
        console.api.close()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make setup` (scripts/system-deps.sh)"
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # bypass_csp: only so the test can inject axe-core; the console's own pages run under their CSP
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    tab = context.new_page()
    yield tab
    context.close()


def _login(page: Page, console: Console, key: str | None = None) -> None:
    page.goto(console.url + "/console/overview")
    page.fill("#key", key or console.admin_key)
    page.click("button:has-text('Log in')")
    page.wait_for_url("**/console/overview")


def test_a_wrong_key_is_refused_in_words_and_leaves_nothing_in_the_browser(page: Page, console: Console) -> None:
    page.goto(console.url + "/console")
    assert page.url.endswith("/console/login?next=/console/overview")
    console.screenshot(page, "login")
    page.fill("#key", "my-wrong-key")
    page.click("button:has-text('Log in')")
    alert = page.locator("[role=alert]")
    assert "That key was not accepted" in alert.inner_text()
    assert page.context.cookies() == []
    storage = page.evaluate("() => JSON.stringify([localStorage, sessionStorage])")
    assert storage == "[{},{}]"


def test_the_overview_chart_fills_with_real_traffic(page: Page, console: Console) -> None:
    _login(page, console)
    cookie = page.context.cookies()[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and console.admin_key not in cookie["value"]
    timing = page.evaluate(
        "() => { const n = performance.getEntriesByType('navigation')[0]; return n.domInteractive - n.startTime; }"
    )
    print(f"\nfirst page (overview) interactive after {timing:.0f} ms from loopback")
    console.chat(2)
    figure = page.locator("figure[data-chart=requests]")
    deadline = time.monotonic() + 30
    while int(figure.get_attribute("data-points") or 0) == 0:  # the history samples every 5 s, the page polls
        assert time.monotonic() < deadline, "the requests chart never showed a data point"
        page.wait_for_timeout(1000)
    assert "This replica only" in page.inner_text("#chart-source")
    assert f"{MODEL} v1" in figure.inner_text()
    assert page.locator(".u-wrap canvas").count() >= 6
    console.screenshot(page, "overview")


def test_promote_through_a_gate_refusal_and_roll_back(page: Page, console: Console) -> None:
    gates = {"aliases": ["production"], "gates": [{"type": "pass_rate", "suite": "smoke", "min": 0.9}]}
    assert console.api.put(f"/admin/models/{MODEL}/gates", json=gates).status_code == 200
    _login(page, console)
    page.click("nav >> text=Models")
    console.screenshot(page, "models")
    page.click(f"a:has-text('{MODEL}')")
    page.click("a:has-text('Promote v2 to production')")
    assert "production: v1 → v2" in page.inner_text(".move")
    assert_accessible(page, "promote confirmation")
    page.click("button:has-text('Confirm')")
    refusal = page.inner_text("[role=alert]")
    assert "refused" in refusal and "smoke" in refusal, refusal
    console.screenshot(page, "promote-refused")
    assert page.locator("#reason[required]").count() == 1  # force needs a typed reason
    page.fill("#reason", "canary looked fine by hand")
    page.click("button:has-text('Force the move')")
    assert "Moved production" in page.inner_text("[role=status]")
    assert console.api.get(f"/admin/models/{MODEL}").json()["aliases"]["production"] == 2
    history = page.inner_text("body")
    assert "FORCED past failed gates" in history and "canary looked fine by hand" in history
    console.screenshot(page, "model")
    page.click("a:has-text('Roll back production')")
    assert "production: v2 → v1" in page.inner_text(".move")
    assert_accessible(page, "rollback confirmation")
    page.click("button:has-text('Confirm')")
    assert "back: v2 → v1" in page.inner_text("[role=status]")
    assert console.api.get(f"/admin/models/{MODEL}").json()["aliases"]["production"] == 1
    audit = console.api.get("/admin/audit", params={"action": "registry.alias_moved"}).json()["data"]
    assert [a["actor"].split("(")[0] for a in audit[:2]] == ["key:bootstrap-admin"] * 2  # as the session's key
    console.api.delete(f"/admin/models/{MODEL}/gates")


def test_a_rollout_shows_its_steps_and_is_aborted_with_confirmation(page: Page, console: Console) -> None:
    plan = {"steps": [10, 50, 100], "look_s": 5, "step_max_s": 600, "min_sample": 1000}
    started = console.api.post("/admin/rollouts", json={"route": MODEL, "candidate": f"{MODEL}:2", "plan": plan})
    assert started.status_code == 201, started.text
    rollout = started.json()
    _login(page, console)
    page.click("nav >> text=Rollouts")
    assert "running" in page.inner_text("tbody")
    page.click(f"a:has-text('#{rollout['id']}')")
    assert page.locator("ol.steps li").count() == 3 and "10 %" in page.inner_text("ol.steps .now")
    console.screenshot(page, "rollout")
    page.click("a:has-text('Abort…')")
    assert f"Abort rollout #{rollout['id']} on {MODEL}" in page.inner_text(".move")
    assert_accessible(page, "abort confirmation")
    page.click("button:has-text('Confirm: abort')")
    assert "is now aborted" in page.inner_text("[role=status]")
    assert console.api.get(f"/admin/rollouts/{rollout['id']}").json()["state"] == "aborted"
    assert "abort" in page.inner_text("main")  # the decision history has the abort, with who did it


def test_filter_the_request_log_and_open_a_request(page: Page, console: Console) -> None:
    console.chat(2)
    _login(page, console)
    page.goto(console.url + "/console/requests")
    page.fill("#f-route", MODEL)
    page.fill("#f-status", "2xx")
    page.click("form.filters button:has-text('Filter')")
    assert "route=" in page.url and "status=2xx" in page.url
    rows = page.locator("tbody tr")
    deadline = time.monotonic() + 20
    while rows.count() == 0:  # rows reach the database through the record writer within a second or so
        assert time.monotonic() < deadline, "no stored request appeared"
        page.reload()
    for i in range(rows.count()):
        assert MODEL in rows.nth(i).inner_text() and "200" in rows.nth(i).inner_text()
    console.screenshot(page, "requests")
    assert page.locator("a:has-text('Export these as JSON lines')").count() == 1
    rows.nth(0).locator("td:nth-child(2) a").click()
    body = page.inner_text("main")
    assert "Trace id" in body and "Request body (as stored, redacted)" in body
    console.screenshot(page, "request")


def test_shadow_pairs_are_shown_side_by_side_with_their_difference(page: Page, console: Console) -> None:
    console.chat(2, MIRRORED)
    _login(page, console)
    page.goto(console.url + f"/console/shadow?route={MIRRORED}")
    deadline = time.monotonic() + 30
    while page.locator("section.pair").count() == 0:  # the copy is stored once its own answer is in
        assert time.monotonic() < deadline, "no shadow pair appeared"
        page.wait_for_timeout(500)
        page.reload()
    pair = page.locator("section.pair").first
    text = pair.inner_text()
    assert "Primary: stable" in text and "Shadow: copy" in text, text  # the route's target names
    assert pair.locator("pre").count() == 2
    if "outputs differ" in text:  # the two versions answered differently: the difference is marked
        assert pair.locator("pre del, pre ins").count() > 0
    console.screenshot(page, "shadow")


def test_create_and_revoke_a_key_then_read_the_verified_audit_log(page: Page, console: Console) -> None:
    _login(page, console)
    page.goto(console.url + "/console/keys")
    page.fill("#k-name", "from-the-console")
    page.click("button:has-text('Create key')")
    secret = page.inner_text(".secret-value")
    assert secret.startswith("my-")
    console.screenshot(page, "keys")
    row = page.locator("tr", has_text="from-the-console")
    row.locator("summary").click()
    row.locator("button:has-text('Confirm: revoke')").click()
    assert "Revoked key from-the-console" in page.inner_text("[role=status]")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    deadline = time.monotonic() + 5  # this gateway reloads its key snapshot at once, others within a key poll
    while True:
        headers = {"authorization": f"Bearer {secret}"}
        answer = httpx.post(console.url + "/v1/chat/completions", headers=headers, json=body, timeout=60)
        if answer.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.status_code == 401, answer.text
    page.click("nav >> text=Audit")
    assert "intact" in page.inner_text(".verified")
    assert "key.revoke" in page.inner_text("main")
    console.screenshot(page, "audit")
    page.click("nav >> text=Routes")
    assert f"{MODEL}:1" in page.inner_text("main")
    console.screenshot(page, "routes")


def test_every_page_is_reached_by_keyboard_and_has_no_serious_axe_violation(page: Page, console: Console) -> None:
    assert AXE.exists(), "axe-core is missing: run `make setup` (npm ci in console-ui/)"
    _login(page, console)
    for name in PAGES:
        page.keyboard.press("Tab")
        for _ in range(20):  # Tab from wherever focus is until the page's link in the navigation has it
            focused = page.evaluate("() => document.activeElement.textContent.trim()")
            if focused == name:
                break
            page.keyboard.press("Tab")
        assert focused == name, f"the {name} link is not reachable by Tab"
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none", f"the focused {name} link shows no focus"
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.url.endswith(f"/console/{name.lower()}")
        assert_accessible(page, name)
