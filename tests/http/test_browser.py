"""The page in real Chromium (Debian's package, driven by Playwright).

The app runs under uvicorn in a thread on a free port. A person signs in with
the PAT, opens a troop, issues a token (the value shown once is read off the
page and verified with the library), rotates it (the old value dies) and
revokes it (the seat is freed on the page). Every run takes the screenshots;
they land in ``docs/img/http-*.png`` (which docs/http.md shows) only when
``TROOPAUTH_SCREENSHOTS=1`` is set, so that an ordinary test run leaves the
working tree as it was.

Outside CI a machine without Chromium skips this test with the reason; under
``CI=true`` it fails instead (``.ci/run`` installs Chromium).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from troopauth import Grant, InvalidToken, MemoryStore, Permission, TroopAuth
from troopauth.http import create_app

from ..helpers import Setup, make_account
from .conftest import Live

ROOT = Path(__file__).resolve().parents[2]
IMAGES = (
    ROOT / "docs" / "img"
    if os.environ.get("TROOPAUTH_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="troopauth-screenshots-"))
)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    """Chromium's path; skip (fail under CI) without it or without Playwright."""
    in_ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    reason = None
    if not Path(CHROMIUM).exists():
        reason = "Chromium is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "Playwright for Python is not installed (the dev extra has it)"
    if reason is not None:
        if in_ci:
            pytest.fail(f"{reason}; CI=true: the browser test must run")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def live() -> Iterator[tuple[str, TroopAuth, Setup]]:
    """The app over a MemoryStore, served on a free port; its base URL."""
    with MemoryStore() as store:
        auth = TroopAuth(store)
        setup = make_account(auth, seats=4, troops=2)
        with Live(create_app(auth)) as base:
            yield base, auth, setup


@pytest.fixture
def mounted() -> Iterator[tuple[str, TroopAuth, Setup]]:
    """The app mounted at /tokens-admin of a FastAPI app, served on a free
    port; the mount point's URL."""
    from fastapi import FastAPI

    with MemoryStore() as store:
        auth = TroopAuth(store)
        setup = make_account(auth, seats=3, troops=2)
        host = FastAPI()
        host.mount("/tokens-admin", create_app(auth))
        with Live(host) as base:
            yield base + "/tokens-admin", auth, setup


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page in a fresh profile, and the errors it logs."""
    executable = _chromium()
    from playwright.sync_api import expect, sync_playwright

    # Four sessions share two cores here: give slow steps time, not flakes.
    expect.set_options(timeout=30_000)
    problems: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=executable,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: problems.append(str(e)))
            yield page, problems
        finally:
            context.close()


def _sign_in_and_open(
    page: Any, base: str, value: str, troop_id: str, listed: bool = True
) -> None:
    """Sign in with *value* and open the troop: from the picker the troops
    listing fills, or (*listed* false) by typing its id."""
    from playwright.sync_api import expect

    page.goto(base + "/")
    expect(page.locator("#welcome")).to_be_visible()
    # Before sign-in only the welcome shows: no troop picker, no workspace.
    expect(page.locator("#pick")).to_be_hidden()
    expect(page.locator("#workspace")).to_be_hidden()
    page.fill("#bearer", value)
    page.click("#login button[type=submit]")
    expect(page.locator("#pick")).to_be_visible()
    assert page.input_value("#bearer") == ""
    if listed:
        expect(page.locator("#troop-select")).to_be_visible()
        expect(page.locator("#troop-id")).to_be_hidden()
        page.select_option("#troop-select", troop_id)
    else:
        expect(page.locator("#troop-id")).to_be_visible()
        expect(page.locator("#troop-select")).to_be_hidden()
        page.fill("#troop-id", troop_id)
        page.click("#pick button[type=submit]")
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.locator("#troop-label")).to_have_text(troop_id)


def _read_secret(page: Any) -> str:
    """The value the dialog shows once, after its warning."""
    from playwright.sync_api import expect

    secret = page.locator("#secret")
    expect(secret).to_be_visible()
    expect(secret).to_contain_text("will not be shown again")
    return str(page.inner_text("#secret-value")).strip()


def _close_secret(page: Any, value: str) -> None:
    """Close the dialog; the value is gone from the page."""
    from playwright.sync_api import expect

    page.click("#secret-done")
    expect(page.locator("#secret")).to_be_hidden()
    assert value not in page.content()


def _confirm(
    page: Any, row: Any, action: str, words: str, shot: str = "", overlap: str = ""
) -> None:
    """Click *action* in *row*, see the confirmation (choosing an *overlap*
    for a rotation), and confirm it."""
    from playwright.sync_api import expect

    row.locator(f'button[data-action="{action}"]').click()
    confirm = page.locator("#confirm")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text(words)
    expect(page.locator("#overlap")).to_be_visible(visible=action == "rotate")
    if overlap:
        page.select_option("#overlap", overlap)
    if shot:
        page.screenshot(path=str(IMAGES / shot))
    page.click("#confirm-ok")


def _rotate_twice(page: Any, row: Any, auth: TroopAuth, value: str) -> str:
    """Rotate with an hour's overlap (the old value still works), then at once
    (both older values die); the newest value."""
    from playwright.sync_api import expect

    _confirm(page, row, "rotate", "stops working at once", "http-confirm.png", "3600")
    overlapped = _read_secret(page)
    assert overlapped != value
    expect(page.locator("#notice")).to_contain_text("keeps working for 1 hour")
    auth.authenticate(value)
    _close_secret(page, overlapped)
    _confirm(page, row, "rotate", "stops working at once")
    rotated = _read_secret(page)
    for old in (value, overlapped):
        with pytest.raises(InvalidToken):
            auth.authenticate(old)
    _close_secret(page, rotated)
    return rotated


def test_issue_rotate_revoke_in_chromium(live, browser_page):
    """The troop is picked from the account's troops; issue shows the value
    once (it verifies); the PAT sees what expires within 7 days; rotate with
    an hour's overlap keeps the old value
    working, rotate at once kills both older values; revoke frees the seat on
    the page; the members are listed; the page logs no error."""
    from playwright.sync_api import expect

    base, auth, setup = live
    page, problems = browser_page
    tid = setup.tid
    auth.issue_token(
        setup.owner, tid, Grant.parse("view,use", "key:deploy"), name="terraform"
    )
    auth.add_member(setup.owner, tid, "alice", Grant.parse("view", "key:docs"))
    soon = auth.issue_token(
        setup.owner,
        setup.troops[1].id,
        Grant.parse("use"),
        name="cert-renewal",
        expires_at=datetime.now(UTC) + timedelta(days=2),
    )
    IMAGES.mkdir(parents=True, exist_ok=True)
    _sign_in_and_open(page, base, setup.pat.value, tid)
    expect(page.locator("#troop-select option")).to_have_count(2)
    expect(page.locator("#seats-used")).to_have_text("2")
    expiring = page.locator(f'#expiring tr[data-expiring-id="{soon.token_id}"]')
    expect(expiring).to_contain_text("cert-renewal")
    expect(page.locator('#members tr[data-member-id="alice"]')).to_contain_text(
        "view on key:docs"
    )
    expect(page.locator("#pager")).to_be_hidden()

    # Issue: the value is shown once, with its warning and copy button.
    page.fill("#issue-name", "ci-deploy")
    page.check('input[name="perm"][value="edit"]')
    page.fill("#issue-scope", "key:deploy")
    page.click("#issue-button")
    value = _read_secret(page)
    principal = auth.verify(value, tid, Permission.EDIT, key="deploy")
    page.click("#copy")
    expect(page.locator("#copied")).to_be_visible()
    page.screenshot(path=str(IMAGES / "http-issued.png"))
    _close_secret(page, value)
    expect(page.locator("#seats-used")).to_have_text("3")
    row = page.locator(f'tr[data-token-id="{principal.token_id}"]')
    expect(row).to_contain_text("ci-deploy")
    expect(row).to_contain_text("view, edit on key:deploy")
    page.screenshot(path=str(IMAGES / "http-desktop.png"), full_page=True)

    rotated = _rotate_twice(page, row, auth, value)
    assert auth.verify(rotated, tid, Permission.EDIT, key="deploy").token_id == (
        principal.token_id
    )

    # Cancelling a revoke changes nothing.
    row.locator('button[data-action="revoke"]').click()
    page.click("#confirm-cancel")
    expect(page.locator("#confirm")).to_be_hidden()
    auth.authenticate(rotated)

    # Revoke, confirmed: the row goes, the seat comes back.
    _confirm(page, row, "revoke", "its seat is freed")
    expect(row).to_have_count(0)
    expect(page.locator("#seats-used")).to_have_text("2")
    expect(page.locator("#seats-free")).to_have_text("2")
    with pytest.raises(InvalidToken):
        auth.authenticate(rotated)
    audit = page.locator("#audit tbody")
    for action in ("token.issue", "token.rotate", "token.revoke", "member.add"):
        expect(audit).to_contain_text(action)
    expect(page.locator("#chain")).to_have_text("chain intact")

    _phone_width(page)
    assert problems == []


def _phone_width(page: Any) -> None:
    """At phone width the page is one column, nothing wider than the screen."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.locator("#workspace")).to_be_visible()
    width = page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
    )
    assert width <= 390, "the page scrolls sideways at phone width"
    page.screenshot(path=str(IMAGES / "http-phone.png"), full_page=True)


class TestMissingChromium:
    """Without Chromium the browser test fails under CI and skips elsewhere."""

    def test_fails_under_ci(self, monkeypatch: pytest.MonkeyPatch):
        """CI=true and no Chromium: the test fails, it does not skip."""
        monkeypatch.setattr(f"{__name__}.CHROMIUM", "/nonexistent/chromium")
        monkeypatch.setenv("CI", "true")
        with pytest.raises(pytest.fail.Exception, match="must run"):
            _chromium()

    def test_skips_outside_ci(self, monkeypatch: pytest.MonkeyPatch):
        """Outside CI a missing Chromium skips with the reason."""
        monkeypatch.setattr(f"{__name__}.CHROMIUM", "/nonexistent/chromium")
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception, match="not installed"):
            _chromium()


def test_attach_and_detach_in_chromium(mounted, browser_page):
    """Mounted under /tokens-admin of a FastAPI app, with the troops listing
    refused (the troop id typed in instead): the page's attach form attaches a
    token of another troop to the open one with the grant chosen; the row's
    Detach button detaches it again; a long list comes a page at a time."""
    from playwright.sync_api import expect

    base, auth, setup = mounted
    page, problems = browser_page
    tid, other = setup.tid, setup.troops[1].id
    issued = auth.issue_token(setup.owner, other, Grant.parse("view"), name="shared")
    older = auth.issue_token(setup.owner, tid, Grant.parse("view"), name="older")
    newer = auth.issue_token(setup.owner, tid, Grant.parse("view"), name="newer")
    page.route(
        "**/accounts/*/troops",
        lambda route: route.fulfill(
            status=403,
            content_type="application/problem+json",
            body='{"type": "urn:troopauth:problem:forbidden", "title": "Forbidden",'
            ' "status": 403, "detail": "no"}',
        ),
    )
    _sign_in_and_open(page, base, setup.pat.value, tid, listed=False)
    expect(page.locator("#no-expiring")).to_be_visible()
    page.fill("#attach-id", issued.token_id)
    page.check('input[name="aperm"][value="use"]')
    page.fill("#attach-scope", "key:deploy")
    page.click("#attach-form button[type=submit]")
    row = page.locator(f'tr[data-token-id="{issued.token_id}"]')
    expect(row).to_contain_text("view, use on key:deploy")
    auth.verify(issued.value, tid, Permission.USE, key="deploy")
    expect(page.locator("#seats-used")).to_have_text("3")
    row.locator('button[data-action="detach"]').click()
    expect(row).to_have_count(0)
    assert tid not in auth.introspect(issued.value).grants
    auth.verify(issued.value, other, Permission.VIEW)
    page.fill("#attach-id", "tok_nope")
    page.click("#attach-form button[type=submit]")
    expect(page.locator("#notice")).to_contain_text("no token")
    assert issued.value not in page.content()

    # One token a page: Next page walks them, oldest first; First page returns.
    page.evaluate("document.body.dataset.pageSize = '1'")
    page.click("#pick button[type=submit]")
    rows = page.locator("#tokens tbody tr")
    expect(page.locator("#pager")).to_be_visible()
    expect(rows).to_have_count(1)
    expect(page.locator(f'tr[data-token-id="{older.token_id}"]')).to_be_visible()
    expect(page.locator("#page-first")).to_be_disabled()
    page.click("#page-next")
    expect(page.locator(f'tr[data-token-id="{newer.token_id}"]')).to_be_visible()
    expect(page.locator("#page-number")).to_have_text("Page 2")
    expect(page.locator("#page-next")).to_be_disabled()
    page.click("#page-first")
    expect(page.locator(f'tr[data-token-id="{older.token_id}"]')).to_be_visible()
    refused = ("404", "403")
    assert [p for p in problems if not any(code in p for code in refused)] == []
