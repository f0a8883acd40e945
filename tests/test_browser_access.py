"""Sign-in and roles in a real browser: a shared server with an editor and a viewer password.

Served on 127.0.0.1 (the test needs no other interface), with the passwords set, so the app asks
for sign-in exactly as it does on a shared address.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.browser_support import BROWSER_MARKS, launch_chromium, serve_app

pytestmark = BROWSER_MARKS

EDITOR_PASSWORD = "edit-the-city-42"
VIEWER_PASSWORD = "look-only-17"
EDITOR_PAGES = ["Overview", "Scene Builder", "Data Generation", "Training Monitor", "Live Inference", "Metrics",
                "Ablations"]
VIEWER_PAGES = ["Overview", "Live Inference", "Metrics"]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workspace = tmp_path_factory.mktemp("access-ws")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFLOCAL_")}
    env.update(RFLOCAL_PASSWORD=EDITOR_PASSWORD, RFLOCAL_VIEWER_PASSWORD=VIEWER_PASSWORD,
               HOME=str(workspace))  # no ~/.streamlit/secrets.toml
    with serve_app(workspace, env=env) as url:
        yield url


@pytest.fixture(scope="module")
def chromium():
    with launch_chromium() as b:
        yield b


def _sign_in(page, url: str, password: str, name: str = "") -> None:
    page.goto(url)
    page.get_by_role("heading", name="Sign in").wait_for(timeout=60_000)
    if name:
        page.get_by_role("textbox", name="Your name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _pages(page) -> list[str]:
    nav = page.get_by_test_id("stSidebarNav")
    nav.wait_for(timeout=60_000)
    return [name for name in EDITOR_PAGES if nav.get_by_text(name, exact=True).count()]


def test_only_the_sign_in_form_shows_and_a_wrong_password_is_refused(shared_server, chromium):
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    _sign_in(page, shared_server, "not-the-password")
    page.get_by_test_id("stAlert").first.wait_for(timeout=60_000)
    assert page.get_by_role("heading", name="Sign in").count() == 1
    assert page.get_by_test_id("stSidebarNav").count() == 0  # no page is listed before sign-in
    assert page.get_by_role("heading", name="RFLocal workbench").count() == 0
    page.close()


def test_a_viewer_sees_three_pages_and_an_editor_all(shared_server, chromium):
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    _sign_in(page, shared_server, VIEWER_PASSWORD, name="vera")
    page.get_by_role("heading", name="RFLocal workbench").wait_for(timeout=60_000)
    assert _pages(page) == VIEWER_PAGES
    page.get_by_text("Signed in as").wait_for(timeout=30_000)
    # a deep link to a page the role may not use opens a new session: sign-in first, never the page
    page.goto(f"{shared_server}/training_monitor")
    page.wait_for_timeout(3000)
    assert page.get_by_role("heading", name="Training Monitor").count() == 0
    page.close()

    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    _sign_in(page, shared_server, EDITOR_PASSWORD, name="ed")
    page.get_by_role("heading", name="RFLocal workbench").wait_for(timeout=60_000)
    assert _pages(page) == EDITOR_PAGES
    page.close()
