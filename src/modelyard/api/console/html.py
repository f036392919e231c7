"""The console's HTML: one layout, and the few helpers every page uses (escaping, tables, forms, badges).

Pages are built server-side as strings: every value that came from outside is passed through :func:`esc` at the
point it is written, and nothing is ever written unescaped except markup these helpers produced. Plain HTML forms
do every change (so the console works by keyboard, and without JavaScript except for the live charts); each one
carries the session's CSRF token.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PAGES = (
    ("overview", "Overview"),
    ("models", "Models"),
    ("routes", "Routes"),
    ("rollouts", "Rollouts"),
    ("requests", "Requests"),
    ("keys", "Keys"),
    ("audit", "Audit"),
)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the session's key (None with auth off), what it may do, and the token its forms carry."""

    key_name: str | None
    key_id: str | None
    scopes: tuple[str, ...]
    csrf: str
    can_change: bool
    notices: tuple[str, ...] = field(default=())


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def attrs(**values: Any) -> str:
    """``name="value"`` pairs, escaped; ``True`` gives a bare attribute, ``None``/``False`` none at all."""
    out = []
    for name, value in values.items():
        name = name.rstrip("_").replace("_", "-")
        if value is True:
            out.append(f" {name}")
        elif value not in (None, False):
            out.append(f' {name}="{esc(value)}"')
    return "".join(out)


def layout(title: str, page: str, body: str, viewer: Viewer | None, errors: Sequence[str] = (), head: str = "") -> str:
    """A whole page: skip link, navigation (the current page marked), who is signed in, messages, the body."""
    nav = ""
    who = ""
    if viewer is not None:
        links = "".join(
            f'<li><a href="/console/{slug}"{attrs(aria_current="page" if slug == page else None)}>{name}</a></li>'
            for slug, name in PAGES
        )
        nav = f'<nav aria-label="Console pages"><ul>{links}</ul></nav>'
        if viewer.key_name is None:
            who = '<p class="who warn">Authentication is off: anyone who can reach this gateway may change it.</p>'
        else:
            who = (
                f'<div class="who"><span>Signed in as key <strong>{esc(viewer.key_name)}</strong> '
                f"({esc(', '.join(viewer.scopes))})</span>"
                f'<form method="post" action="/console/logout">{csrf_field(viewer)}'
                '<button type="submit" class="link">Log out</button></form></div>'
            )
    messages = "".join(f'<p class="notice" role="status">{esc(n)}</p>' for n in (viewer.notices if viewer else ()))
    messages += "".join(f'<div class="error" role="alert"><p>{esc(e)}</p></div>' for e in errors)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · modelyard console</title>"
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/console/assets/console.css">'
        f"{head}</head><body>"
        '<a class="skip" href="#main">Skip to content</a>'
        f'<header class="top"><a class="brand" href="/console/overview">modelyard</a>{nav}{who}</header>'
        f'<main id="main" tabindex="-1"><h1>{esc(title)}</h1>{messages}{body}</main>'
        '<script src="/console/assets/console.js" defer></script>'
        "</body></html>"
    )


def csrf_field(viewer: Viewer) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(viewer.csrf)}">'


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str = "Nothing yet.") -> str:
    """A table whose cells are already HTML (escape values with :func:`esc` when building rows)."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="empty">{esc(empty)}</p>'
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    return (
        f'<div class="table-wrap" tabindex="0" role="region" aria-label="{esc(caption)}"><table>'
        f"<caption>{esc(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def facts(pairs: Iterable[tuple[str, Any]]) -> str:
    """A definition list of label → value (values escaped)."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v if v not in (None, '') else '—')}</dd>" for k, v in pairs)
    return f'<dl class="facts">{items}</dl>'


def badge(text: str, tone: str = "") -> str:
    return f'<span class="badge {esc(tone)}">{esc(text)}</span>'


def link(href: str, text: Any) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def number(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"
