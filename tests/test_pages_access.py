"""Sign-in and roles in the workbench (issue 20), headless under AppTest: without credentials only the
sign-in form shows, a wrong password is refused (and slows further tries down), a viewer sees Overview,
Live Inference and Metrics only (and no delete or cancel button), an editor sees every page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rflocal_core import access, serving

ROOT = Path(__file__).resolve().parents[1]
PAGES = {
    "pages/views/home.py": "RFLocal workbench",
    "pages/views/scene_builder.py": "Scene Builder",
    "pages/views/data_generation.py": "Data Generation",
    "pages/views/training_monitor.py": "Training Monitor",
    "pages/views/live_inference.py": "Live Inference",
    "pages/views/metrics.py": "Metrics",
    "pages/views/ablations.py": "Ablations",
}
VIEWER_PAGES = {"RFLocal workbench", "Live Inference", "Metrics"}


@pytest.fixture
def auth_env(workspace, monkeypatch, tmp_path):
    """An editor and a viewer password, no secrets file in the home folder; a fresh sign-in throttle."""
    for plain, hashed in access.PASSWORD_ENV.values():
        monkeypatch.delenv(plain, raising=False)
        monkeypatch.delenv(hashed, raising=False)
    monkeypatch.delenv(serving.AUTH_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.streamlit/secrets.toml
    monkeypatch.setenv("RFLOCAL_PASSWORD", "edit-pw")
    monkeypatch.setenv("RFLOCAL_VIEWER_PASSWORD_HASH", access.hash_password("view-pw", iterations=1_000))
    monkeypatch.setattr(access, "THROTTLE", access.SignInThrottle())
    return workspace


def _app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _sign_in(at: AppTest, password: str, name: str = "") -> None:
    at.text_input(key="auth_name").set_value(name)
    at.text_input(key="auth_password").set_value(password)
    at.button(key="auth_submit").click()
    at.run()
    assert not at.exception, at.exception


def _titles_by_page(at: AppTest) -> dict[str, list[str] | None]:
    """Each page's titles, or None for a page the navigation does not list (AppTest cannot switch to it)."""
    out: dict[str, list[str] | None] = {}
    for page in PAGES:
        try:
            at.switch_page(page)
        except ValueError as exc:
            assert "Could not find a navigation page" in str(exc)
            out[page] = None
            continue
        at.run()
        assert not at.exception, (page, at.exception)
        out[page] = [t.value for t in at.title]
    return out


def _is_sign_in_form(at: AppTest) -> bool:
    return [t.value for t in at.title] == ["Sign in"] and [w.label for w in at.text_input] == ["Your name", "Password"]


def test_without_credentials_only_the_sign_in_form_shows(auth_env):
    at = _app()
    assert _is_sign_in_form(at)
    assert not at.metric and not at.sidebar.button  # nothing of the workspace, no sign-out
    assert set(_titles_by_page(at).values()) == {None}  # no page is listed


def test_a_wrong_password_is_refused(auth_env):
    at = _app()
    _sign_in(at, "edit-pw!")
    assert _is_sign_in_form(at)
    assert [e.value for e in at.error] == ["password: wrong password"]
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/views/scene_builder.py")
    for _ in range(2):
        _sign_in(at, "wrong")
    _sign_in(at, "wrong")  # the fourth wrong try: the next one must wait
    assert [e.value for e in at.error] == ["password: wrong password; wait 2 s before the next try"]
    _sign_in(at, "edit-pw")  # even the right one, at once
    assert _is_sign_in_form(at)
    assert at.error[0].value.startswith("password: too many wrong tries; try again in ")


def test_a_viewer_sees_three_pages_and_nothing_to_delete(auth_env):
    at = _app()
    _sign_in(at, "view-pw", name="Vera")
    assert [t.value for t in at.title] == ["RFLocal workbench"]
    assert "Signed in as **Vera** (viewer)" in [c.value for c in at.sidebar.caption]
    steps = [m.value.split("**")[1] for m in at.markdown if m.value.startswith("**")]
    assert steps == ["Live Inference", "Metrics"], steps  # the Overview's workflow: only the viewer's pages
    titles = _titles_by_page(at)
    assert {PAGES[p] for p, t in titles.items() if t is not None} == VIEWER_PAGES
    assert all(t in (None, [PAGES[p]]) for p, t in titles.items())
    for page in ("pages/views/home.py", "pages/views/live_inference.py", "pages/views/metrics.py"):
        at.switch_page(page)
        at.run()
        keys = [b.key or "" for b in at.button]
        assert not [k for k in keys if "delete" in k or "cancel" in k], (page, keys)


def test_an_editor_sees_every_page_and_can_sign_out(auth_env):
    at = _app()
    _sign_in(at, "edit-pw")
    assert "Signed in as **editor** (editor)" in [c.value for c in at.sidebar.caption]
    steps = [m.value.split("**")[1] for m in at.markdown if m.value.startswith("**")]
    assert steps == ["Scene Builder", "Data Generation", "Training Monitor", "Live Inference", "Metrics", "Ablations"]
    assert _titles_by_page(at) == {page: [title] for page, title in PAGES.items()}
    at.sidebar.button(key="auth_signout").click()
    at.run()
    assert _is_sign_in_form(at)


@pytest.fixture
def every_interface():
    """Streamlit's ``server.address`` 0.0.0.0 for the test (as ``--server.address`` would set it)."""
    from streamlit import config

    old = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    yield
    config.set_option("server.address", old)


def test_a_shared_server_with_a_password_shows_the_sign_in_form(auth_env, every_interface):
    at = _app()
    assert _is_sign_in_form(at) and not at.warning  # no refusal, no open-server banner
    _sign_in(at, "view-pw")
    assert [t.value for t in at.title] == ["RFLocal workbench"]


def test_without_sign_in_everyone_is_the_local_editor(auth_env, monkeypatch, every_interface):
    monkeypatch.delenv("RFLOCAL_PASSWORD")
    monkeypatch.delenv("RFLOCAL_VIEWER_PASSWORD_HASH")
    monkeypatch.setenv(serving.AUTH_ENV, "none")  # on purpose: the banner says so (tests/test_serving.py)
    at = _app()
    assert not at.sidebar.button  # nobody to sign out
    assert _titles_by_page(at) == {page: [title] for page, title in PAGES.items()}


def test_with_an_identity_provider_only_its_sign_in_button_shows(auth_env, monkeypatch, tmp_path):
    monkeypatch.delenv("RFLOCAL_PASSWORD")
    monkeypatch.delenv("RFLOCAL_VIEWER_PASSWORD_HASH")
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(  # in the home folder (auth_env points HOME here)
        '[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\ncookie_secret = "x"\n'
        '[auth.lab]\nclient_id = "id"\nclient_secret = "s"\n'
        'server_metadata_url = "https://id.lab.org/.well-known/openid-configuration"\n', encoding="utf-8")
    at = _app()
    assert [t.value for t in at.title] == ["Sign in"]
    assert [b.label for b in at.button] == ["Sign in with lab"]
    assert set(_titles_by_page(at).values()) == {None}  # no page is listed before signing in


def test_a_viewer_uploads_a_measurement_file_and_gets_a_prediction(auth_env):
    from rflocal_core import demo

    if not demo.demo_available():
        pytest.skip("assets/demo is missing (make demo-model)")
    at = _app()
    _sign_in(at, "view-pw")
    at.switch_page("pages/views/live_inference.py")
    at.run()
    at.file_uploader(key="li_upload").set_value(("example_single.json", demo.EXAMPLE_SINGLE.read_bytes(),
                                                  "application/json"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.metric[0].label == "Predicted position"


@pytest.fixture
def secrets_files_option(tmp_path):
    """Streamlit's ``secrets.files`` pointed at one file outside the usual places (as ``--secrets.files``
    or ``[secrets] files`` in config.toml would); the file is written by the test."""
    from streamlit import config

    path = tmp_path / "elsewhere" / "secrets.toml"
    path.parent.mkdir()
    old = config.get_option("secrets.files")
    config.set_option("secrets.files", [str(path)])
    yield path
    config.set_option("secrets.files", old)


def test_an_identity_provider_in_streamlits_secrets_files_is_the_sign_in(auth_env, monkeypatch,
                                                                          secrets_files_option):
    # Streamlit's st.login reads [auth] from the files of the secrets.files option; the workbench must
    # read the same files, or a configured sign-in would be skipped and everyone be the local editor.
    monkeypatch.delenv("RFLOCAL_PASSWORD")
    monkeypatch.delenv("RFLOCAL_VIEWER_PASSWORD_HASH")
    secrets_files_option.write_text(
        '[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\ncookie_secret = "x"\nclient_id = "id"\n'
        'client_secret = "s"\nserver_metadata_url = "https://id.lab.org/.well-known/openid-configuration"\n',
        encoding="utf-8")
    at = _app()
    assert [t.value for t in at.title] == ["Sign in"]
    assert [b.label for b in at.button] == ["Sign in with your identity provider"]
    assert set(_titles_by_page(at).values()) == {None}
