"""Console session cookies, CSRF tokens and the login throttle (pure, no server)."""

from __future__ import annotations

import gzip
from importlib import resources

from modelyard.api.console.diff import word_diff
from modelyard.api.console.session import LoginThrottle, SessionSigner


def test_a_cookie_verifies_until_it_expires_or_is_logged_out_and_cannot_be_altered() -> None:
    signer = SessionSigner(b"k" * 32, lifetime_s=60)
    session, cookie = signer.issue("key_abc", now=1000.0)
    assert signer.verify(cookie, 1010.0) == session
    assert signer.verify(cookie, 1060.0) is None  # expired
    assert signer.verify(cookie.replace("key_abc", "key_abd"), 1010.0) is None  # another key's id: forged
    assert SessionSigner(b"x" * 32, 60).verify(cookie, 1010.0) is None  # another deployment's signing key
    assert signer.verify("garbage", 1010.0) is None
    signer.end(session, 1020.0)
    assert signer.verify(cookie, 1021.0) is None


def test_csrf_tokens_are_bound_to_their_session() -> None:
    signer = SessionSigner(b"k" * 32, lifetime_s=60)
    one, _ = signer.issue("key_a", 0.0)
    two, _ = signer.issue("key_a", 0.0)
    assert signer.csrf_ok(one, signer.csrf_token(one))
    assert not signer.csrf_ok(one, signer.csrf_token(two))


def test_the_throttle_counts_failures_per_address_in_a_sliding_minute() -> None:
    throttle = LoginThrottle(failures_per_minute=2)
    throttle.failed("a", 0.0)
    assert throttle.wait_s("a", 1.0) == 0
    throttle.failed("a", 10.0)
    assert throttle.wait_s("a", 11.0) == 49.0  # the first failure leaves the window at 60 s
    assert throttle.wait_s("b", 11.0) == 0  # another address is not affected
    assert throttle.wait_s("a", 60.5) == 0
    throttle.succeeded("a")
    assert throttle.wait_s("a", 11.0) == 0


def test_word_diff_marks_what_each_side_alone_has_and_escapes_both() -> None:
    left, right = word_diff("the <b>cat</b> sat", "the dog sat")
    assert left == "the <del>&lt;b&gt;cat&lt;/b&gt;</del> sat"
    assert right == "the <ins>dog</ins> sat"


def test_the_console_ships_its_assets_inside_the_package_and_under_200_kb_of_gzipped_javascript() -> None:
    folder = resources.files("modelyard.api.console") / "assets"
    scripts = [item for item in folder.iterdir() if item.name.endswith(".js")]
    assert {s.name for s in scripts} == {"console.js", "uPlot.iife.min.js"}
    shipped = sum(len(gzip.compress(s.read_bytes())) for s in scripts)
    assert shipped < 200_000, shipped
    for item in folder.iterdir():  # nothing is fetched from elsewhere at run time
        text = item.read_text(errors="replace")
        assert "https://cdn" not in text and "//fonts.googleapis" not in text, item.name
