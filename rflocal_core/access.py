"""Who may do what: users, roles, the least role of each action, and the shared-password sign-in.

The command line and Python callers act as :data:`LOCAL_USER` (an editor): whoever runs them on the
machine already has the workspace. The workbench signs people in (one shared password per role, or
Streamlit's own sign-in with an identity provider) and passes the :class:`User` to every core call
that changes the workspace or takes the machine's cores; the core refuses (:func:`require`) what the
role may not do, so hiding a page is not the only guard.

Passwords come from the environment (``RFLOCAL_PASSWORD`` / ``RFLOCAL_VIEWER_PASSWORD`` in plain
text, or ``RFLOCAL_PASSWORD_HASH`` / ``RFLOCAL_VIEWER_PASSWORD_HASH``) or from the secrets file
(``[rflocal] password_hash`` for editors, ``[rflocal.passwords]`` with one hash per role). A hash is
``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (``python -m rflocal_core auth hash`` makes one); passwords are
compared in constant time, and wrong tries from one client slow its further tries down.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rflocal_core.errors import AccessDeniedError, InvalidInputError, SignInThrottledError

__all__ = [
    "ACTIONS", "LOCAL_USER", "PASSWORD_ENV", "ROLES", "THROTTLE", "Credential", "SignInThrottle", "User",
    "allowed", "credentials", "hash_password", "oidc_user", "require", "sign_in", "verify_password",
]

#: Roles from least to most rights: a viewer looks (Overview, Live Inference with uploads, Metrics);
#: an editor may do everything.
ROLES = ("viewer", "editor")

#: Action name -> the least role that may take it.
ACTIONS: dict[str, str] = {
    "view": "viewer",
    "predict": "viewer",
    "evaluate": "viewer",
    "build_scene": "editor",
    "import_scene": "editor",
    "delete_scene": "editor",
    "generate": "editor",
    "import_dataset": "editor",
    "delete_dataset": "editor",
    "train": "editor",
    "resume": "editor",
    "delete_run": "editor",
    "ablate": "editor",
    "cancel": "editor",
}


@dataclass(frozen=True)
class User:
    """Someone acting on the workspace: a name (for the log and the owner of what they start) and a role."""

    name: str
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            msg = f"role: {self.role!r} is not a role; expected one of {', '.join(ROLES)}"
            raise InvalidInputError(msg)
        if not (1 <= len(self.name) <= 64 and self.name.isprintable() and self.name == self.name.strip()):
            msg = (f"name: {self.name!r} is not a user name; expected 1-64 printable characters, no space "
                   "at either end")
            raise InvalidInputError(msg)


#: The command line and Python: full rights.
LOCAL_USER = User("local", "editor")


def allowed(user: User, action: str) -> bool:
    """Whether ``user``'s role may take ``action`` (one of :data:`ACTIONS`)."""
    if action not in ACTIONS:
        msg = f"action: {action!r} is not an action; expected one of {', '.join(ACTIONS)}"
        raise InvalidInputError(msg)
    return ROLES.index(user.role) >= ROLES.index(ACTIONS[action])


def require(user: User, action: str) -> None:
    """Raise :class:`~rflocal_core.errors.AccessDeniedError` unless ``user`` may take ``action``."""
    if not allowed(user, action):
        least = ACTIONS[action]
        msg = (f"{action}: user {user.name!r} has the role {user.role!r}; this needs the role {least!r} "
               f"(sign in with the {least} password)")
        raise AccessDeniedError(msg)


# --------------------------------------------------------------------------- password hashes

HASH_SCHEME = "pbkdf2_sha256"
#: PBKDF2-SHA256 rounds of a new hash (OWASP's 2023 advice): about a third of a second per try.
HASH_ITERATIONS = 600_000
_HASH = re.compile(r"pbkdf2_sha256\$(\d{1,9})\$([A-Za-z0-9+/=_-]{8,})\$([A-Za-z0-9+/=_-]{16,})")


def hash_password(password: str, *, iterations: int = HASH_ITERATIONS, salt: bytes | None = None) -> str:
    """A salted hash of ``password``: ``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (salt and hash base64)."""
    if not password:
        msg = "password: empty; expected at least one character"
        raise InvalidInputError(msg)
    if not 1_000 <= iterations <= 100_000_000:
        msg = f"iterations: {iterations} is out of range; expected 1000 to 100000000"
        raise InvalidInputError(msg)
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    b64 = base64.b64encode
    return f"{HASH_SCHEME}${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the hash ``encoded`` (compared in constant time)."""
    found = _HASH.fullmatch(encoded.strip())
    try:
        if found is None:
            raise ValueError(encoded)
        iterations, salt, expected = int(found[1]), base64.b64decode(found[2]), base64.b64decode(found[3])
    except ValueError:  # binascii.Error too; the value is a secret and is never shown, nor chained
        msg = ("password hash: not a password hash; expected pbkdf2_sha256$ITERATIONS$SALT$HASH "
               "(python -m rflocal_core auth hash makes one)")
        raise InvalidInputError(msg) from None
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def _same_text(given: str, expected: str) -> bool:
    # Digests first: compare_digest of texts of different lengths would say so at once.
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8")).digest(),
                               hashlib.sha256(expected.encode("utf-8")).digest())


# --------------------------------------------------------------------------- configuration

#: Role -> (plain-text variable, hash variable) of its shared password.
PASSWORD_ENV: dict[str, tuple[str, str]] = {
    "editor": ("RFLOCAL_PASSWORD", "RFLOCAL_PASSWORD_HASH"),
    "viewer": ("RFLOCAL_VIEWER_PASSWORD", "RFLOCAL_VIEWER_PASSWORD_HASH"),
}

@dataclass(frozen=True)
class Credential:
    """One role's shared password: plain text (from the environment) or a hash, and where it was set."""

    role: str
    secret: str = field(repr=False)  # kept out of repr: logs and error reports
    hashed: bool = False
    source: str = ""

    def matches(self, password: str) -> bool:
        """Whether ``password`` is this one (constant time)."""
        if not self.hashed:
            return _same_text(password, self.secret)
        try:
            return verify_password(password, self.secret)
        except InvalidInputError as exc:  # name where the bad hash was set (never its value)
            msg = f"{self.source}: {exc}"
            raise InvalidInputError(msg) from None


def _secret_credentials(secrets: Mapping[str, Any]) -> list[Credential]:
    table = secrets.get("rflocal")
    if not isinstance(table, dict):
        return []
    out = []
    if table.get("password_hash"):
        out.append(Credential("editor", str(table["password_hash"]), True, "secrets [rflocal] password_hash"))
    passwords = table.get("passwords")
    for role, encoded in (passwords.items() if isinstance(passwords, dict) else ()):
        if role not in ROLES:
            msg = f"secrets [rflocal.passwords]: {role!r} is not a role; expected one of {', '.join(ROLES)}"
            raise InvalidInputError(msg)
        out.append(Credential(role, str(encoded), True, f"secrets [rflocal.passwords] {role}"))
    return out


def credentials(secrets: Mapping[str, Any]) -> list[Credential]:
    """Every configured shared password: the environment's, then those of ``secrets`` (the secrets files'
    tables, :func:`rflocal_core.serving.read_secrets`)."""
    out = []
    for role, (plain, hashed) in PASSWORD_ENV.items():
        if os.environ.get(plain):
            out.append(Credential(role, os.environ[plain], False, plain))
        if os.environ.get(hashed):
            out.append(Credential(role, os.environ[hashed], True, hashed))
    return out + _secret_credentials(secrets)


# --------------------------------------------------------------------------- sign-in


class SignInThrottle:
    """Wrong passwords per client key: after ``free_tries`` the next try waits ``base_delay_s``, then twice
    as long after each further wrong one (at most ``max_delay_s``). Kept in memory; a right one clears it."""

    def __init__(self, *, free_tries: int = 3, base_delay_s: float = 2.0, max_delay_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free_tries, self.base_delay_s, self.max_delay_s = free_tries, base_delay_s, max_delay_s
        self._clock = clock
        self._state: dict[str, tuple[int, float]] = {}  # client -> (wrong tries, next try allowed at)
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Raise :class:`~rflocal_core.errors.SignInThrottledError` while ``client`` must wait."""
        with self._lock:
            _, next_at = self._state.get(client, (0, 0.0))
        wait = next_at - self._clock()
        if wait > 0:
            msg = f"password: too many wrong tries; try again in {wait:.0f} s"
            raise SignInThrottledError(msg, retry_after_s=wait)

    def failed(self, client: str) -> float:
        """Count a wrong try of ``client``; return the seconds it must now wait (0 for the first few)."""
        now = self._clock()
        with self._lock:
            if len(self._state) > 10_000:  # bounded memory: forget clients idle for an hour
                self._state = {k: v for k, v in self._state.items() if v[1] > now - 3600}
            tries = self._state.get(client, (0, 0.0))[0] + 1
            over = tries - self.free_tries
            delay = 0.0 if over <= 0 else min(self.base_delay_s * 2 ** (over - 1), self.max_delay_s)
            self._state[client] = (tries, now + delay)
        return delay

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s wrong tries."""
        with self._lock:
            self._state.pop(client, None)


#: The process-wide throttle of the workbench's sign-in form.
THROTTLE = SignInThrottle()


def sign_in(password: str, *, secrets: Mapping[str, Any], name: str = "", client: str = "unknown",
            throttle: SignInThrottle | None = None) -> User:
    """The :class:`User` whose role's shared password ``password`` is (named ``name``, else after the role).

    ``secrets`` are the secrets files' tables (:func:`rflocal_core.serving.read_secrets`); the
    environment's passwords count too (:func:`credentials`).

    Raises :class:`~rflocal_core.errors.AccessDeniedError` for a wrong password (or none configured) and
    :class:`~rflocal_core.errors.SignInThrottledError` while ``client`` must wait after wrong tries.
    """
    throttle = THROTTLE if throttle is None else throttle
    if name.strip().lower() == LOCAL_USER.name:
        msg = f"name: {LOCAL_USER.name!r} stands for the command line in the audit log; choose another name"
        raise InvalidInputError(msg)
    throttle.check(client)
    configured = credentials(secrets)
    if not configured:
        msg = ("password: no password is configured; set RFLOCAL_PASSWORD (or RFLOCAL_PASSWORD_HASH, or "
               "[rflocal] password_hash in .streamlit/secrets.toml)")
        raise AccessDeniedError(msg)
    roles = [c.role for c in configured if c.matches(password)]  # every one checked: the same work either way
    if not roles:
        delay = throttle.failed(client)
        msg = "password: wrong password" + (f"; wait {delay:.0f} s before the next try" if delay else "")
        raise AccessDeniedError(msg)
    throttle.succeeded(client)
    role = max(roles, key=ROLES.index)
    return User(name.strip() or role, role)


def _matches(entry: str, email: str, groups: Iterable[str]) -> bool:
    entry = entry.strip().lower()
    if not entry or not email and not entry.startswith("group:"):  # "" never stands for everyone
        return False
    if entry.startswith("group:"):
        return entry[6:] in {g.lower() for g in groups}
    if entry.startswith("@"):
        return email.endswith(entry)
    return entry == email


def _identity(claims: Mapping[str, Any]) -> tuple[str, bool, list[str]]:
    """The address (``email``, else ``sub``), whether the provider vouches for it, and the groups."""
    email = str(claims.get("email") or claims.get("sub") or "").strip().lower()
    # email_verified false (a bool, or "false" from some providers): anyone may have typed that address
    verified = str(claims.get("email_verified", True)).strip().lower() not in ("false", "0")
    groups = claims.get("groups") or []
    groups = [groups] if isinstance(groups, str) else groups  # one group: some providers send a string
    return email, verified, [str(g) for g in groups]


def oidc_user(claims: Mapping[str, Any], *, secrets: Mapping[str, Any]) -> User:
    """The :class:`User` of someone signed in with an identity provider (``st.user``'s claims).

    ``[rflocal.roles]`` in the secrets maps people to roles: ``editor = ["ana@lab.org", "@lab.org",
    "group:rf-team"]`` (an address, a domain, a group of the ``groups`` claim), ``viewer = [...]``, and
    ``default = "viewer"`` for everyone else signed in; without a default, others are refused. An address
    the provider says it has not verified (``email_verified`` false) matches no address or domain entry.
    """
    section = secrets.get("rflocal")
    table = section.get("roles") if isinstance(section, dict) else None
    table = table if isinstance(table, dict) else {}
    email, verified, groups = _identity(claims)
    matched = [role for role in ROLES
               if any(_matches(e, email if verified else "", groups) for e in table.get(role, []))]
    role = matched[-1] if matched else table.get("default")
    if role is None:
        unverified = "" if verified else " (the identity provider has not verified this address)"
        msg = (f"sign-in: {email or 'this account'} has no role{unverified}; an editor adds it to "
               "[rflocal.roles] in the secrets file (or sets default = \"viewer\")")
        raise AccessDeniedError(msg)
    name = " ".join(str(claims.get("name") or email or "user").split())[:64].strip()
    return User(name if name.isprintable() else "user", str(role))
