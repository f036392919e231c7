"""The web console's endpoints: login and logout, the static assets, and every page and change.

The console is a client of the admin API, in-process: a page reads, and a form changes, through
:data:`AdminCall` — the same endpoint table, handlers and scope check as ``/admin/*``, with the session's key as
the caller, so every change is audited as that key and a ``read`` key cannot change anything here either. What
the console adds is the browser's side: a session cookie instead of a bearer key (``session.py``), a CSRF token on
every form, and pages in words (an error from the API is shown as its message, never as a blank page).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from importlib import resources
from urllib.parse import parse_qsl, quote, unquote

import orjson

from modelyard.api.console import (
    pages_keys,
    pages_models,
    pages_overview,
    pages_requests,
    pages_rollouts,
    pages_routes,
)
from modelyard.api.console.charts import ChartSource
from modelyard.api.console.context import AdminCall, Context, Page
from modelyard.api.console.html import Viewer, esc, layout
from modelyard.api.console.session import COOKIE, LoginThrottle, Session, SessionSigner
from modelyard.api.console.settings import ConsoleSettings
from modelyard.asgi import Request, send_bytes
from modelyard.errors import (
    APIError,
    console_forbidden_origin,
    console_login_refused,
    console_login_throttled,
    console_session_ended,
    not_found,
)
from modelyard.security.authz import authenticate, has_scope
from modelyard.security.keys import ADMIN, READ, KeyGrant
from modelyard.security.layer import SecurityLayer

FLASH = "modelyard_console_flash"
_FORM_LIMIT = 64 * 1024
_HTML = b"text/html; charset=utf-8"
_ASSET_TYPES = {".css": b"text/css; charset=utf-8", ".js": b"text/javascript; charset=utf-8"}
_NO_STORE = (b"cache-control", b"no-store")
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class Console:
    def __init__(
        self, settings: ConsoleSettings, security: SecurityLayer | None, call: AdminCall, charts: ChartSource
    ) -> None:
        self._settings = settings
        self._security = security
        self._call = call
        self._charts = charts
        auth = security is not None and security.settings.auth
        # Sessions are signed under a key derived from the deployment's pepper, so every replica accepts them.
        derived = security.poller.hasher(b"modelyard console session signing key v1") if auth and security else None
        self._signer = SessionSigner(bytes.fromhex(derived) if derived else _random_key(), settings.console_session_s)
        self._throttle = LoginThrottle(settings.console_login_failures)

    # -- login, logout, assets ---------------------------------------------------------------------------------------

    async def index(self, request: Request) -> None:
        await _redirect(request, "/console/overview")

    async def login_page(self, request: Request) -> None:
        if not self._auth:
            await _redirect(request, "/console/overview")
            return
        query = request.query()
        await self._send_login(request, 200, query.get("next", ""), _read_flash(request))

    async def login(self, request: Request) -> None:
        if not self._auth:
            await _redirect(request, "/console/overview")
            return
        form = await _form(request)
        next_path = _safe_next(form.get("next", ""))
        client, now = request.client_host, time.time()
        wait = self._throttle.wait_s(client, now)
        if wait > 0:
            error = console_login_throttled(wait)
            await self._send_login(request, error.status, next_path, (), error, [(b"retry-after", b"%d" % int(wait))])
            return
        grant, why = self._check_key(form.get("key", "").strip(), now)
        if grant is None:
            self._throttle.failed(client, now)
            await self._send_login(request, 401, next_path, (), console_login_refused(why))
            return
        self._throttle.succeeded(client)
        _, cookie = self._signer.issue(grant.id, now)
        max_age = int(self._settings.console_session_s)
        headers = [(b"set-cookie", self._cookie(request, COOKIE, cookie, max_age))]
        await _redirect(request, next_path or "/console/overview", headers)

    async def logout(self, request: Request) -> None:
        session = self._session_of(request)
        form = await _form(request)
        if session is not None:
            if not self._signer.csrf_ok(session, form.get("csrf", "")):
                await self._send_page(request, None, _error_page(console_forbidden_origin()))
                return
            self._signer.end(session, time.time())
        headers = [
            (b"set-cookie", self._cookie(request, COOKIE, "", 0)),
            (b"set-cookie", self._cookie(request, FLASH, quote("You are logged out.", safe=""), 60)),
        ]
        await _redirect(request, "/console/login", headers)

    async def asset(self, request: Request) -> None:
        name = request.params["id"]
        folder = resources.files("modelyard.api.console") / "assets"
        kind = _ASSET_TYPES.get(name[name.rfind(".") :]) if "." in name else None
        target = folder / name
        if kind is None or "/" in name or name.startswith(".") or not target.is_file():
            raise not_found(f"No console asset named {name!r}.", "id")
        headers = [(b"cache-control", b"public, max-age=3600"), (b"x-content-type-options", b"nosniff")]
        await send_bytes(request.send, 200, target.read_bytes(), headers, content_type=kind)

    # -- pages -------------------------------------------------------------------------------------------------------

    async def overview(self, request: Request) -> None:
        await self._page(request, lambda ctx: pages_overview.page(ctx, self._charts))

    async def overview_data(self, request: Request) -> None:
        ctx = await self._context(request, json_reply=True)
        if ctx is None:
            return
        since = request.query().get("since")
        data = await self._charts.data(_seconds(since))
        await send_bytes(request.send, 200, orjson.dumps(data), [_NO_STORE])

    async def models(self, request: Request) -> None:
        await self._page(request, pages_models.listing)

    async def model(self, request: Request) -> None:
        name = request.params["name"]
        await self._page(request, lambda ctx: pages_models.detail(ctx, name))

    async def promote_confirm(self, request: Request) -> None:
        name, query = request.params["name"], request.query()
        await self._page(request, lambda ctx: pages_models.confirm_promote(ctx, name, query))

    async def promote(self, request: Request) -> None:
        name = request.params["name"]
        await self._change(request, lambda ctx, form: pages_models.promote(ctx, name, form))

    async def rollback_confirm(self, request: Request) -> None:
        name, query = request.params["name"], request.query()
        await self._page(request, lambda ctx: pages_models.confirm_rollback(ctx, name, query))

    async def rollback(self, request: Request) -> None:
        name = request.params["name"]
        await self._change(request, lambda ctx, form: pages_models.rollback(ctx, name, form))

    async def routes(self, request: Request) -> None:
        await self._page(request, pages_routes.page)

    async def rollouts(self, request: Request) -> None:
        await self._page(request, pages_rollouts.listing)

    async def rollout(self, request: Request) -> None:
        rollout_id = request.params["rollout"]
        await self._page(request, lambda ctx: pages_rollouts.detail(ctx, rollout_id))

    async def rollout_confirm(self, request: Request) -> None:
        rollout_id, action = request.params["rollout"], request.params["action"]
        await self._page(request, lambda ctx: pages_rollouts.confirm(ctx, rollout_id, action))

    async def rollout_act(self, request: Request) -> None:
        rollout_id, action = request.params["rollout"], request.params["action"]
        await self._change(request, lambda ctx, form: pages_rollouts.act(ctx, rollout_id, action))

    async def requests(self, request: Request) -> None:
        query = request.query()
        await self._page(request, lambda ctx: pages_requests.listing(ctx, query))

    async def request_detail(self, request: Request) -> None:
        request_id = request.params["id"]
        await self._page(request, lambda ctx: pages_requests.detail(ctx, request_id))

    async def export_requests(self, request: Request) -> None:
        ctx = await self._context(request)
        if ctx is None:
            return
        query = {k: v for k, v in request.query().items() if v.strip()}
        try:
            _, value = await ctx.call("GET", "/admin/requests/export", ctx.grant, query, None)
        except APIError as error:
            await self._send_page(request, ctx.viewer, _error_page(error))
            return
        disposition = (b"content-disposition", b'attachment; filename="modelyard-requests.jsonl"')
        await send_bytes(request.send, 200, value.body, [_NO_STORE, disposition], content_type=b"application/x-ndjson")

    async def shadow(self, request: Request) -> None:
        query = request.query()
        await self._page(request, lambda ctx: pages_requests.shadow(ctx, query))

    async def keys(self, request: Request) -> None:
        await self._page(request, pages_keys.listing)

    async def create_key(self, request: Request) -> None:
        await self._change(request, pages_keys.create)

    async def revoke_key(self, request: Request) -> None:
        key_id = request.params["id"]
        await self._change(request, lambda ctx, form: pages_keys.revoke(ctx, key_id))

    async def audit(self, request: Request) -> None:
        query = request.query()
        await self._page(request, lambda ctx: pages_keys.audit(ctx, query))

    # -- plumbing ----------------------------------------------------------------------------------------------------

    @property
    def _auth(self) -> bool:
        return self._security is not None and self._security.settings.auth

    def _check_key(self, key: str, now: float) -> tuple[KeyGrant | None, str]:
        if not key:
            return None, "Enter an API key."
        assert self._security is not None
        grant = self._security.poller.lookup(key.encode())
        refusal = authenticate(grant, True, now)
        if refusal is not None or grant is None:
            why = refusal.message if refusal is not None else "Unknown API key."
            return None, f"That key was not accepted: {why}"
        if not has_scope(grant, READ):
            return None, f"Key '{grant.name}' has neither the read nor the admin scope the console needs."
        return grant, ""

    def _session_of(self, request: Request) -> Session | None:
        value = _cookies(request).get(COOKIE)
        return self._signer.verify(value, time.time()) if value else None

    async def _context(self, request: Request, json_reply: bool = False) -> Context | None:
        """Who is looking, or None once the answer (a redirect to the login page, or a 401) has been sent."""
        notices = tuple(n for n in [_read_flash(request)] if n)
        if not self._auth:
            viewer = Viewer(None, None, (), self._signer.csrf_token(_ANONYMOUS), True, notices)
            return Context(viewer, None, self._call)
        assert self._security is not None
        session = self._session_of(request)
        grant = self._security.poller.snapshot.by_id(session.key_id) if session is not None else None
        why = "Log in with an API key that has the read or admin scope."
        if session is not None:
            refusal = authenticate(grant, True, time.time())
            if refusal is not None or grant is None:
                why = "Your session ended: " + (refusal.message if refusal else "its key no longer exists.")
                grant = None
            elif not has_scope(grant, READ):
                why, grant = f"Your session ended: key '{grant.name}' no longer has the read scope.", None
        if session is None or grant is None:
            if json_reply:
                error = console_session_ended(why)
                await send_bytes(request.send, error.status, error.body(), [_NO_STORE])
            else:
                target = "/console/login?next=" + quote(request.scope["path"], safe="/")
                flash = (
                    [] if session is None else [(b"set-cookie", self._cookie(request, FLASH, quote(why, safe=""), 60))]
                )
                await _redirect(request, target, [(b"set-cookie", self._cookie(request, COOKIE, "", 0)), *flash])
            return None
        viewer = Viewer(
            grant.name,
            grant.id,
            tuple(sorted(grant.scopes)),
            self._signer.csrf_token(session),
            has_scope(grant, ADMIN),
            notices,
        )
        return Context(viewer, grant, self._call)

    async def _page(self, request: Request, build: Callable[[Context], Awaitable[Page]]) -> None:
        ctx = await self._context(request)
        if ctx is None:
            return
        try:
            page = await build(ctx)
        except APIError as error:
            page = _error_page(error)
        await self._send_page(request, ctx.viewer, page)

    async def _change(self, request: Request, act: Callable[[Context, dict[str, str]], Awaitable[Page | str]]) -> None:
        """A form post: the session, its CSRF token and the origin are checked, then ``act`` runs; it answers a
        page (shown as is, e.g. a refusal or a secret shown once) or a path to go to with a notice."""
        ctx = await self._context(request)
        if ctx is None:
            return
        form = await _form(request)
        origin = request.header(b"origin")
        host = request.header(b"host")
        if not self._signer_ok(ctx, form) or (
            origin is not None and host is not None and not _same_origin(origin, host)
        ):
            await self._send_page(request, ctx.viewer, _error_page(console_forbidden_origin()))
            return
        try:
            outcome = await act(ctx, form)
        except APIError as error:
            outcome = _error_page(error)
        if isinstance(outcome, Page):
            await self._send_page(request, ctx.viewer, outcome)
            return
        target, _, notice = outcome.partition("#notice=")
        headers = [(b"set-cookie", self._cookie(request, FLASH, quote(notice, safe=""), 60))] if notice else []
        await _redirect(request, target, headers)

    def _signer_ok(self, ctx: Context, form: dict[str, str]) -> bool:
        token = form.get("csrf", "")
        return bool(token) and hmac.compare_digest(token, ctx.viewer.csrf)

    async def _send_page(self, request: Request, viewer: Viewer | None, page: Page) -> None:
        body = layout(page.title, page.slug, page.body, viewer, page.errors, page.head).encode()
        headers = [_NO_STORE, *_SECURITY_HEADERS]
        if _cookies(request).get(FLASH):
            headers.append((b"set-cookie", self._cookie(request, FLASH, "", 0)))
        await send_bytes(request.send, page.status, body, headers, content_type=_HTML)

    async def _send_login(
        self,
        request: Request,
        status: int,
        next_path: str,
        notice: str | tuple[()] | None,
        error: APIError | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        notices = (notice,) if isinstance(notice, str) and notice else ()
        viewer = None
        body = (
            "".join(f'<p class="notice" role="status">{esc(n)}</p>' for n in notices)
            + '<form method="post" action="/console/login" class="login">'
            f'<input type="hidden" name="next" value="{esc(_safe_next(next_path))}">'
            '<label for="key">API key</label>'
            '<input id="key" name="key" type="password" autocomplete="off" required autofocus'
            ' aria-describedby="key-help">'
            '<p id="key-help" class="help">A key with the <code>read</code> scope can look; <code>admin</code> can '
            "also change things. The key is checked once and never kept in the browser: the console keeps a "
            "signed session cookie that names the key, not the key.</p>"
            '<button type="submit">Log in</button></form>'
        )
        page = Page("Log in", "login", body, status, (error.message,) if error else ())
        html_body = layout(page.title, page.slug, page.body, viewer, page.errors).encode()
        headers = [_NO_STORE, *_SECURITY_HEADERS, *(extra or [])]
        if _cookies(request).get(FLASH):
            headers.append((b"set-cookie", self._cookie(request, FLASH, "", 0)))
        await send_bytes(request.send, status, html_body, headers, content_type=_HTML)

    @staticmethod
    def _cookie(request: Request, name: str, value: str, max_age: int) -> bytes:
        secure = "; Secure" if _is_tls(request) else ""
        return f"{name}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}".encode()


_ANONYMOUS = Session("anonymous", 0.0, float("inf"), "anonymous")


def _random_key() -> bytes:
    return secrets.token_bytes(32)


def _seconds(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _error_page(error: APIError) -> Page:
    return Page(
        "Something went wrong", "", f"<p>The gateway answered {error.status}.</p>", error.status, (error.message,)
    )


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body(_FORM_LIMIT)
    return dict(parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))


def _cookies(request: Request) -> dict[str, str]:
    header = request.header(b"cookie")
    if not header:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header.decode(errors="replace"))
    except Exception:  # a malformed Cookie header is no session, not an error
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _read_flash(request: Request) -> str:
    return unquote(_cookies(request).get(FLASH, ""))[:500]


def _safe_next(path: str) -> str:
    """Only a console path of this gateway (never another site: an open redirect)."""
    return path if path.startswith("/console/") and "//" not in path and "\\" not in path else ""


def _is_tls(request: Request) -> bool:
    return request.scope.get("scheme") == "https"


def _same_origin(origin: bytes, host: bytes) -> bool:
    return origin.split(b"://", 1)[-1] == host


async def _redirect(request: Request, location: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_bytes(
        request.send, 303, b"", [(b"location", location.encode()), _NO_STORE, *(headers or [])], content_type=_HTML
    )
