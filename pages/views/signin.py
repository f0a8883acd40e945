"""Sign-in of the workbench (issue 20). Not a page itself: app.py calls :func:`signed_in_user` first.

With a shared password configured (:func:`rflocal_core.serving.auth_mode` is ``"password"``) a
session sees only the sign-in form until a password is right; with an identity provider (``[auth]``
in ``.streamlit/secrets.toml``) only a button that starts Streamlit's own sign-in (``st.login``).
Without either, everyone is :data:`~rflocal_core.access.LOCAL_USER` (the local default; serving
other machines so needs ``RFLOCAL_AUTH=none``: app.py's banner, :mod:`rflocal_core.serving`). The
user is kept in the session's state; pages read it with :func:`current_user` and pass it to the
core, which refuses what the role may not do.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from rflocal_core import access, serving
from rflocal_core.access import LOCAL_USER, User
from rflocal_core.errors import AccessDeniedError, InvalidInputError, ServingError

#: Session key of the signed-in :class:`~rflocal_core.access.User`.
USER_KEY = "auth_user"


def secrets_files() -> list[Path]:
    """The secrets files of this server: Streamlit's ``secrets.files`` option, where ``st.login`` reads
    ``[auth]`` (``--secrets.files`` or ``[secrets] files`` in config.toml move it), so that the sign-in the
    workbench asks for is the one Streamlit has; by default the places of
    :func:`rflocal_core.serving.secrets_files`."""
    return [Path(p) for p in st.get_option("secrets.files")]


def current_user() -> User:
    """The user of this session (app.py signed them in before any page runs)."""
    user = st.session_state.get(USER_KEY)
    if isinstance(user, User):
        return user
    return signed_in_user()  # a page run without app.py's sign-in: the same rule, never a free pass


def _client() -> str:
    """The throttle's key: the browser's address where Streamlit knows it (behind a proxy: the proxy's)."""
    address = getattr(st.context, "ip_address", None)
    return address if isinstance(address, str) and address else "unknown"


def _password_form() -> None:
    st.title("Sign in")
    st.caption("This RFLocal workbench is shared: sign in with the password you were given (the editor or the "
               "viewer password).")
    with st.form("auth_form"):
        name = st.text_input("Your name", key="auth_name", max_chars=64,
                             help="optional: shown as the owner of what you start (default: your role)")
        password = st.text_input("Password", type="password", key="auth_password")
        submitted = st.form_submit_button("Sign in", type="primary", key="auth_submit")
    if not submitted:
        return
    try:
        user = access.sign_in(password, name=name, client=_client(), secrets=serving.read_secrets(secrets_files()))
    except (AccessDeniedError, InvalidInputError, ServingError) as exc:
        st.error(str(exc))
        return
    st.session_state[USER_KEY] = user
    st.rerun()


def _oidc_user() -> User | None:
    """The user signed in through the identity provider, or None after drawing the sign-in button."""
    if st.user.is_logged_in:
        try:
            return access.oidc_user(st.user.to_dict(), secrets=serving.read_secrets(secrets_files()))
        except (AccessDeniedError, InvalidInputError, ServingError) as exc:
            st.error(str(exc))
            st.button("Sign out", on_click=st.logout, key="auth_logout")
            return None
    st.title("Sign in")
    # [auth.NAME] tables are named providers (st.login("NAME")); without them [auth] is the one provider.
    auth = serving.read_secrets(secrets_files()).get("auth", {})
    providers = [name for name, table in auth.items() if isinstance(table, dict)] or [None]
    for provider in providers:
        if st.button(f"Sign in with {provider or 'your identity provider'}", type="primary",
                     key=f"auth_login_{provider or 'default'}"):
            try:
                st.login(provider) if provider else st.login()
            except Exception as exc:  # noqa: BLE001 - Streamlit raises several types for a bad [auth] table
                st.error(f"sign-in: Streamlit cannot start the sign-in ({exc}); check the [auth] table of "
                         ".streamlit/secrets.toml and that Authlib is installed (pip install 'streamlit[auth]')")
    return None


def signed_in_user() -> User:
    """The user of this session; until someone has signed in, draw the sign-in form and stop the script."""
    user = st.session_state.get(USER_KEY)
    if isinstance(user, User):
        return user
    try:
        mode = serving.auth_mode(files=secrets_files())
    except ServingError as exc:  # a broken secrets file: refuse rather than serve without sign-in
        st.error(str(exc))
        st.stop()
    if mode in ("none", "unset"):
        st.session_state[USER_KEY] = LOCAL_USER
        return LOCAL_USER
    user = _oidc_user() if mode == "oidc" else _password_form()
    if user is None:
        st.stop()
    st.session_state[USER_KEY] = user
    return user


def account_panel(user: User) -> None:
    """The sidebar's line on who is signed in, with a sign-out button (nothing without sign-in)."""
    mode = serving.auth_mode(files=secrets_files())
    if mode not in ("password", "oidc"):
        return
    with st.sidebar:
        st.caption(f"Signed in as **{user.name}** ({user.role})")
        st.button("Sign out", key="auth_signout", on_click=_sign_out, args=(mode,))


def _sign_out(mode: str) -> None:
    """The sign-out button's callback: forget the user; with a provider, also Streamlit's sign-in cookie.

    A callback, not ``if st.button(...): st.logout(); st.rerun()``: that ``st.rerun`` often dropped
    ``st.logout``'s redirect to ``/auth/logout``, so the cookie stayed and a reload signed the user in again.
    """
    st.session_state.pop(USER_KEY, None)
    if mode == "oidc":
        st.logout()
