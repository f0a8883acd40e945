"""Sign-in with an identity provider (``st.login``) in a real browser, offline.

The test runs a small OpenID Connect provider on 127.0.0.1 (discovery, an authorization endpoint that
signs in one fixed test user and redirects back with a code, a token endpoint that checks the client,
the code, the redirect URI and the PKCE verifier and returns an RS256-signed ``id_token``, and a JWKS
endpoint with its public key). The workbench reads an ``[auth]`` section that points at it from
``~/.streamlit/secrets.toml`` of a temporary HOME, so the repository is not touched. Streamlit's own
OIDC client (Authlib) does the protocol, verifies the signature, issuer, audience and nonce; the test
clicks through it in headless Chromium and checks the role ``[rflocal.roles]`` gives the user.

Plain http is fine here: Streamlit checks only that ``redirect_uri`` ends with ``/oauth2callback``, and
browsers treat 127.0.0.1 as a secure context for its cookies; a shared server needs https
(README "Access control").
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser_support import BROWSER_MARKS, free_port, launch_chromium, serve_app

pytestmark = BROWSER_MARKS

CLIENT_ID = "rflocal-test"
CLIENT_SECRET = "client-secret-for-the-test-idp"  # a test provider's, never a real one
USER = {"sub": "u-1001", "email": "vera@lab.example", "email_verified": True, "name": "Vera Viewer"}
VIEWER_PAGES = ["Overview", "Live Inference", "Metrics"]
ALL_PAGES = ["Overview", "Scene Builder", "Data Generation", "Training Monitor", "Live Inference", "Metrics",
             "Ablations"]


def _jose():
    """Authlib's JOSE module (deprecated for joserfc, still the one this test signs with)."""
    from authlib.deprecate import AuthlibDeprecationWarning  # first: importing it sets its "always" filter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AuthlibDeprecationWarning)
        import authlib.jose

    return authlib.jose


def _new_key():
    return _jose().JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "test-key-1"})


class TestProvider:
    """A minimal OpenID Connect provider (authorization code flow, PKCE S256) that signs in :attr:`user`."""

    __test__ = False  # a helper, not a test class

    def __init__(self) -> None:
        self.key = _new_key()
        self.signing_key = self.key  # the key id_tokens are signed with (the JWKS publishes self.key)
        self.user: dict[str, object] = dict(USER)  # who signs in at /authorize
        self.codes: dict[str, dict[str, str]] = {}  # code -> the authorization request it answers
        self.tokens_issued = 0
        self.ended_sessions: list[str] = []  # the "sub" of each id_token_hint of a sign-out at /logout
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def metadata(self) -> dict[str, object]:
        return {
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
            "userinfo_endpoint": f"{self.issuer}/userinfo", "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"], "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], object]:
        """Sign the fixed user in at once (no login form) and send the browser back with a code."""
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            return 400, {}, {"error": "unauthorized_client"}
        if "openid" not in query.get("scope", "").split():
            return 400, {}, {"error": "invalid_scope"}
        code = secrets.token_urlsafe(16)
        self.codes[code] = query
        back = {"code": code, "state": query.get("state", "")}
        return 302, {"Location": f"{query['redirect_uri']}?{urllib.parse.urlencode(back)}"}, None

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, str], object]:
        """Exchange a code once for an RS256-signed id_token, checking client, redirect URI and PKCE."""
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization.startswith("Basic "):
            pair = base64.b64decode(authorization[6:]).decode()
            client_id, client_secret = (urllib.parse.unquote(p) for p in pair.split(":", 1))
        if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {}, {"error": "invalid_client"}
        request = self.codes.pop(form.get("code", ""), None)  # a code is good once
        if request is None or form.get("grant_type") != "authorization_code" \
                or form.get("redirect_uri") != request["redirect_uri"]:
            return 400, {}, {"error": "invalid_grant"}
        if "code_challenge" in request:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != request["code_challenge"]:
                return 400, {}, {"error": "invalid_grant", "error_description": "PKCE verifier"}
        now = int(time.time())
        claims = dict(self.user, iss=self.issuer, aud=CLIENT_ID, iat=now, exp=now + 600)
        if "nonce" in request:
            claims["nonce"] = request["nonce"]
        id_token = _jose().jwt.encode({"alg": "RS256", "kid": "test-key-1"}, claims, self.signing_key).decode()
        self.tokens_issued += 1
        return 200, {}, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                         "expires_in": 600, "id_token": id_token, "scope": request["scope"]}

    def end_session(self, query: dict[str, str]) -> tuple[int, dict[str, str], object]:
        """RP-initiated logout: check the id_token_hint (ours, for this client), then send the browser back."""
        try:
            claims = _jose().jwt.decode(query.get("id_token_hint", ""), self.key)
        except Exception:  # noqa: BLE001 - any bad hint is refused the same way
            return 400, {}, {"error": "invalid_request", "error_description": "id_token_hint"}
        back = query.get("post_logout_redirect_uri", "")
        if query.get("client_id") != CLIENT_ID or claims.get("aud") != CLIENT_ID \
                or not back.endswith("/oauth2callback"):
            return 400, {}, {"error": "invalid_request"}
        self.ended_sessions.append(str(claims["sub"]))
        return 302, {"Location": back}, None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, headers: dict[str, str], body: object) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                data = b"" if body is None else json.dumps(body).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # http.server's name
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/.well-known/openid-configuration":
                    self._send(200, {}, provider.metadata())
                elif url.path == "/jwks":
                    self._send(200, {}, {"keys": [provider.key.as_dict(is_private=False)]})
                elif url.path == "/authorize":
                    self._send(*provider.authorize(query))
                elif url.path == "/logout":
                    self._send(*provider.end_session(query))
                elif url.path == "/userinfo":
                    self._send(200, {}, provider.user)
                else:
                    self._send(404, {}, {"error": "not_found"})

            def do_POST(self) -> None:  # http.server's name
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if urllib.parse.urlsplit(self.path).path == "/token":
                    self._send(*provider.token(form, self.headers.get("Authorization", "")))
                else:
                    self._send(404, {}, {"error": "not_found"})

            def log_message(self, *args: object) -> None:  # quiet: pytest shows failures
                pass

        return Handler

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _secrets_toml(provider: TestProvider, port: int, *, name: str = "") -> str:
    """The [auth] section (the provider in it, or in [auth.NAME]) and [rflocal.roles]."""
    return f"""
[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "{secrets.token_hex(32)}"
{f"[auth.{name}]" if name else ""}
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
server_metadata_url = "{provider.issuer}/.well-known/openid-configuration"

[rflocal.roles]
viewer = ["{USER['email']}"]
editor = ["group:rf-team"]
"""


@contextlib.contextmanager
def _serve(home: Path, port: int, extra_args: Sequence[str] = ()) -> Iterator[str]:
    """``streamlit run app.py`` on 127.0.0.1:``port`` with HOME=``home`` (no RFLOCAL_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFLOCAL_")}
    env.update(HOME=str(home), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")  # the IdP is local
    with serve_app(home / "workspace", log_path=home / "streamlit.log", env=env, extra_args=extra_args,
                   port=port) as url:
        yield url


@pytest.fixture(scope="module")
def idp() -> Iterator[TestProvider]:
    provider = TestProvider()
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture
def provider(idp: TestProvider) -> Iterator[TestProvider]:
    """The module's provider, back to the test user and the published key after each test."""
    yield idp
    idp.user, idp.signing_key = dict(USER), idp.key


@pytest.fixture(scope="module")
def oidc_server(idp: TestProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The workbench with the [auth] section in ~/.streamlit/secrets.toml of a temporary HOME."""
    home = tmp_path_factory.mktemp("oidc-home")
    port = free_port()
    (home / ".streamlit").mkdir()
    (home / ".streamlit" / "secrets.toml").write_text(_secrets_toml(idp, port))
    with _serve(home, port) as url:
        yield url


@pytest.fixture(scope="module")
def chromium():
    with launch_chromium() as b:
        yield b


def _pages(page) -> list[str]:
    nav = page.get_by_test_id("stSidebarNav")
    nav.wait_for(timeout=60_000)
    return [name for name in ALL_PAGES if nav.get_by_text(name, exact=True).count()]


def _user_cookies(context, url: str) -> list[str]:
    return [c["name"] for c in context.cookies(url) if c["name"].startswith("_streamlit_user")]


def _sign_in_with_provider(page, url: str, button: str = "Sign in with your identity provider") -> None:
    page.goto(url)
    page.get_by_role("heading", name="Sign in").wait_for(timeout=60_000)
    assert page.get_by_test_id("stSidebarNav").count() == 0  # nothing but the button before sign-in
    assert page.get_by_role("textbox", name="Password").count() == 0  # the provider signs in, not a password
    # Streamlit -> /authorize -> /oauth2callback (code exchanged, id_token verified) -> the app
    page.get_by_role("button", name=button).click()


def test_a_viewer_signs_in_with_the_provider_and_signs_out(oidc_server, provider, chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    issued = provider.tokens_issued
    _sign_in_with_provider(page, oidc_server)
    page.get_by_role("heading", name="RFLocal workbench").wait_for(timeout=60_000)
    assert provider.tokens_issued == issued + 1
    assert page.url.rstrip("/") == oidc_server
    page.get_by_text(f"Signed in as {USER['name']} (viewer)").wait_for(timeout=30_000)
    assert _pages(page) == VIEWER_PAGES
    assert _user_cookies(context, oidc_server)

    # a reload keeps the sign-in (Streamlit's signed cookie), with the same role
    page.reload()
    page.get_by_text(f"Signed in as {USER['name']} (viewer)").wait_for(timeout=60_000)
    assert _pages(page) == VIEWER_PAGES
    # a deep link to a page the role may not use: signed in by the cookie at once, still not that page
    page.goto(f"{oidc_server}/training_monitor")
    page.get_by_text(f"Signed in as {USER['name']} (viewer)").wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    assert page.get_by_role("heading", name="Training Monitor").count() == 0
    assert _pages(page) == VIEWER_PAGES
    page.goto(oidc_server)  # away from Streamlit's "page not found" dialog, which covers the sidebar
    page.get_by_text(f"Signed in as {USER['name']} (viewer)").wait_for(timeout=60_000)

    _sign_out(page, context, oidc_server)
    assert provider.ended_sessions[-1:] == [USER["sub"]]  # Streamlit ended the session at the provider too
    # more rounds without a reload first: the sidebar's button once lost st.logout's redirect to
    # /auth/logout now and then (the cookie stayed, a reload signed the user in again)
    for _ in range(3):
        _sign_in_with_provider(page, oidc_server)
        page.get_by_text(f"Signed in as {USER['name']} (viewer)").wait_for(timeout=60_000)
        _sign_out(page, context, oidc_server)
    context.close()


def _sign_out(page, context, url: str) -> None:
    """Click the sidebar's "Sign out"; check that the cookie is gone and a reload shows the sign-in."""
    # st.logout sends the browser to /auth/logout, which clears the cookie and redirects to the provider's
    # end_session_endpoint, back to /oauth2callback and to the app (a timeout here: the redirect never
    # came, the cookie stays)
    with page.expect_navigation(url=f"{url}/", timeout=30_000):
        page.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
    assert not _user_cookies(context, url), "signed out, yet Streamlit's sign-in cookie is still there"
    page.reload()  # signed out for good, not only in this page's session
    page.get_by_role("button", name="Sign in with your identity provider").wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    assert page.get_by_test_id("stSidebarNav").count() == 0
    assert page.get_by_text("Signed in as").count() == 0


def test_a_group_of_the_id_token_makes_an_editor(oidc_server, provider, chromium):
    provider.user = dict(USER, sub="u-1002", email="ed@other.example", name="Ed Editor", groups=["rf-team"])
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    _sign_in_with_provider(page, oidc_server)
    page.get_by_text("Signed in as Ed Editor (editor)").wait_for(timeout=60_000)
    assert _pages(page) == ALL_PAGES
    context.close()


def test_an_account_without_a_role_is_refused(oidc_server, provider, chromium):
    provider.user = dict(USER, sub="u-1003", email="nobody@else.example", name="No Body")
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    _sign_in_with_provider(page, oidc_server)
    page.get_by_text("sign-in: nobody@else.example has no role").wait_for(timeout=60_000)
    assert page.get_by_test_id("stSidebarNav").count() == 0
    assert page.get_by_role("heading", name="RFLocal workbench").count() == 0
    with page.expect_navigation(url=f"{oidc_server}/", timeout=60_000):  # via /auth/logout
        page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in with your identity provider").wait_for(timeout=60_000)
    assert not _user_cookies(context, oidc_server)
    context.close()


def test_an_id_token_signed_with_another_key_is_refused(oidc_server, provider, chromium):
    # the same key id, a key the JWKS does not publish: the signature check must fail
    provider.signing_key = _new_key()
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    issued = provider.tokens_issued
    _sign_in_with_provider(page, oidc_server)
    for _ in range(120):  # the browser came back and Streamlit exchanged the code
        if provider.tokens_issued > issued:
            break
        page.wait_for_timeout(500)
    assert provider.tokens_issued == issued + 1
    page.wait_for_url(f"{oidc_server}/", timeout=60_000)  # back from /oauth2callback, refused
    page.get_by_role("button", name="Sign in with your identity provider").wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    assert page.get_by_test_id("stSidebarNav").count() == 0
    assert not _user_cookies(context, oidc_server)
    context.close()


def test_a_named_provider_in_the_secrets_files_flag_is_the_sign_in(provider, chromium, tmp_path):
    # Streamlit reads [auth] from --secrets.files; the workbench must read the same file, or it would
    # let everyone in as the local editor while Streamlit's sign-in is configured. The provider is a
    # named one ([auth.lab]: st.login("lab")), as a server with several providers has them.
    home, port = tmp_path / "home", free_port()
    home.mkdir()
    secrets_file = tmp_path / "etc" / "secrets.toml"
    secrets_file.parent.mkdir()
    secrets_file.write_text(_secrets_toml(provider, port, name="lab"))
    with _serve(home, port, ["--secrets.files", str(secrets_file)]) as url:
        context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        _sign_in_with_provider(page, url, "Sign in with lab")
        page.get_by_text(f"Signed in as {USER['name']} (viewer)").wait_for(timeout=60_000)
        assert _pages(page) == VIEWER_PAGES
        context.close()
