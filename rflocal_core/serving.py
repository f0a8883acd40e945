"""Safe serving defaults: loopback unless sign-in is configured or explicitly switched off.

The workbench lets whoever reaches its port upload files, start jobs that take the machine's cores
and delete the workspace, so it serves other machines only by a deliberate choice:

- ``make run`` / ``python -m rflocal_core serve`` bind ``127.0.0.1`` unless told otherwise, and
  ``.streamlit/config.toml`` sets ``server.address = "127.0.0.1"`` for a bare ``streamlit run``;
- on any other address the launcher (:func:`serve`) and ``app.py`` refuse to serve unless sign-in is
  configured (:func:`auth_mode` is ``"password"`` or ``"oidc"``) or switched off explicitly with
  ``RFLOCAL_AUTH=none`` (``"none"``, which the app shows as a warning banner: :func:`open_warning`).

Sign-in itself (the password check, roles) lives in :mod:`rflocal_core.access`; this module only
tells which kind is configured. It reads the secrets files where Streamlit reads them by default: the
user's ``~/.streamlit/secrets.toml``, ``./.streamlit/secrets.toml`` (the working folder) and
``.streamlit/secrets.toml`` beside ``app.py``; the app passes ``files=`` with Streamlit's
``secrets.files`` option instead (``pages/views/signin.py``), so it reads what ``st.login`` reads.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rflocal_core.access import credentials
from rflocal_core.errors import InvalidInputError, ServingError

#: Environment variable that switches sign-in off explicitly: ``RFLOCAL_AUTH=none``.
AUTH_ENV = "RFLOCAL_AUTH"
#: Environment variables of the shared password (plain, or a salted hash: :mod:`rflocal_core.access`).
PASSWORD_ENV = "RFLOCAL_PASSWORD"
PASSWORD_HASH_ENV = "RFLOCAL_PASSWORD_HASH"

#: The address the launcher binds unless told otherwise (this machine only).
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 8501

#: The values :func:`auth_mode` returns.
AUTH_MODES = ("password", "oidc", "none", "unset")

#: The folder of ``app.py`` (the repository root: the package is installed editable beside it).
APP_DIR = Path(__file__).resolve().parents[1]

#: How to serve other machines, as the refusal and the README say it.
HOW_TO = (f"set a shared password ({PASSWORD_ENV}=... or {PASSWORD_HASH_ENV}=..., or [rflocal] password_hash "
          "in .streamlit/secrets.toml), or an identity provider ([auth] in .streamlit/secrets.toml); "
          f"or opt out explicitly with {AUTH_ENV}=none (anyone who reaches the port may then do "
          "everything); or serve this machine only with --address 127.0.0.1 (the default). "
          "README: 'Serving other machines'")


def secrets_files(app_dir: Path | None = None) -> list[Path]:
    """The ``secrets.toml`` files Streamlit reads, first to last (later ones win).

    Parameters
    ----------
    app_dir : Path, optional
        The folder of the app script; default :data:`APP_DIR`.
    """
    app_dir = APP_DIR if app_dir is None else app_dir
    out = [Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml",
           app_dir / ".streamlit" / "secrets.toml"]
    return list(dict.fromkeys(p.resolve() for p in out))  # the working folder is often app_dir


def read_secrets_directory(folder: Path) -> dict[str, Any]:
    """The secrets of a folder (Kubernetes style), as Streamlit reads one named in ``secrets.files``.

    Each subfolder is a section whose files are its keys (the file's text, stripped); a subfolder of one
    file is that file's value itself.

    Raises
    ------
    ServingError
        ``folder`` holds a file (Streamlit wants every secret in a subfolder), or a file is not UTF-8.
    """
    out: dict[str, Any] = {}
    for sub in sorted(folder.iterdir()):
        if not sub.is_dir():
            msg = (f"secrets folder {folder}: {sub.name} is not a folder; expected one subfolder per secret "
                   "(Streamlit's directory secrets)")
            raise ServingError(msg)
        try:
            values = {f.name: f.read_text(encoding="utf-8").strip() for f in sorted(sub.iterdir()) if f.is_file()}
        except UnicodeDecodeError as exc:
            msg = f"secrets folder {sub}: a file is not UTF-8 text ({exc})"
            raise ServingError(msg) from exc
        out[sub.name] = next(iter(values.values())) if len(values) == 1 else values
    return out


def read_secrets(files: Sequence[Path] | None = None) -> dict[str, Any]:
    """The top-level sections of the secrets files merged (a later file's section replaces an earlier one's).

    A path that is a folder is read as Streamlit reads one (:func:`read_secrets_directory`).

    Raises
    ------
    ServingError
        A secrets file exists but is not valid TOML (Streamlit would refuse it too).
    """
    merged: dict[str, Any] = {}
    for path in secrets_files() if files is None else files:
        if path.is_dir() and path.suffix != ".toml":
            merged.update(read_secrets_directory(path))
            continue
        if not path.is_file():
            continue
        try:
            merged.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            msg = f"secrets file {path}: not valid TOML ({exc}); expected TOML such as [rflocal] password_hash = \"...\""
            raise ServingError(msg) from exc
    return merged


def auth_mode(*, files: Sequence[Path] | None = None) -> str:
    """Which sign-in is configured: ``"oidc"``, ``"password"``, ``"none"`` or ``"unset"``.

    ``"oidc"`` when a secrets file has an ``[auth]`` section (Streamlit's ``st.login``);
    ``"password"`` when a shared password of any role is configured (:func:`rflocal_core.access.credentials`:
    ``$RFLOCAL_PASSWORD``, ``$RFLOCAL_PASSWORD_HASH``, the viewer's, or ``[rflocal] password_hash`` /
    ``[rflocal.passwords]`` in a secrets file); ``"none"`` when neither is configured and ``RFLOCAL_AUTH=none``
    opts out explicitly; ``"unset"`` otherwise. Configured sign-in wins over the opt-out (the safe side).

    Parameters
    ----------
    files : sequence of Path, optional
        The secrets files to read; default :func:`secrets_files`.

    Raises
    ------
    ServingError
        ``$RFLOCAL_AUTH`` holds anything but ``none`` (or nothing), or a secrets file is not TOML.
    """
    opt_out = os.environ.get(AUTH_ENV, "").strip().lower()
    if opt_out not in ("", "none"):
        msg = (f"{AUTH_ENV}={os.environ[AUTH_ENV]!r}: expected 'none' (sign-in switched off) or unset "
               "(sign-in configured by a password or an [auth] section)")
        raise ServingError(msg)
    secrets = read_secrets(files)
    if isinstance(secrets.get("auth"), dict):
        return "oidc"
    try:
        configured = credentials(secrets)  # any role's shared password (rflocal_core.access), not only the editors'
    except InvalidInputError as exc:  # e.g. [rflocal.passwords] names no role: refuse rather than guess
        raise ServingError(str(exc)) from exc
    if configured:
        return "password"
    return "none" if opt_out == "none" else "unset"


def is_loopback(address: str | None) -> bool:
    """Whether a server bound to ``address`` can be reached from this machine only.

    ``localhost``, ``127.0.0.0/8`` and ``::1`` (also bracketed or IPv4-mapped) are; an empty or
    missing address (Streamlit then binds every interface), ``0.0.0.0``, ``::`` and any other name or
    address are not.
    """
    text = (address or "").strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:  # an empty address or a host name other than localhost: not provably loopback
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def describe_address(address: str | None) -> str:
    """``address`` as a user reads it: an unset one binds every interface."""
    return repr(address) if address else "every interface (server.address unset)"


def check_serving(address: str | None, *, files: Sequence[Path] | None = None) -> None:
    """Refuse to serve other machines without sign-in.

    Raises
    ------
    ServingError
        ``address`` is not loopback and :func:`auth_mode` is ``"unset"``; the message names the
        address and how to configure sign-in or opt out with ``RFLOCAL_AUTH=none``.
    """
    if is_loopback(address) or auth_mode(files=files) != "unset":
        return
    msg = (f"server address {describe_address(address)} serves other machines, and no sign-in is "
           f"configured: {HOW_TO}")
    raise ServingError(msg)


def open_warning(address: str | None, *, files: Sequence[Path] | None = None) -> str | None:
    """The banner text when the app serves other machines with sign-in switched off, else None."""
    if is_loopback(address) or auth_mode(files=files) != "none":
        return None
    return (f"Sign-in is off ({AUTH_ENV}=none) on {describe_address(address)}: anyone who can reach this "
            "server may upload files, start and cancel jobs, and delete scenes, datasets and runs.")


def check_app(address: str | None, *, files: Sequence[Path] | None = None) -> str | None:
    """What ``app.py`` checks on each run: :func:`check_serving`, then the :func:`open_warning` banner.

    A server started by hand (``streamlit run app.py --server.address 0.0.0.0``) skips the launcher's
    check; the app then shows the refusal instead of the workbench.

    Raises
    ------
    ServingError
        See :func:`check_serving`.
    """
    check_serving(address, files=files)
    return open_warning(address, files=files)


def streamlit_command(address: str, port: int, *, app: Path | None = None) -> list[str]:
    """The command that serves the workbench: ``python -m streamlit run app.py --server.address A --server.port P``.

    Raises
    ------
    InvalidInputError
        ``port`` is outside 1-65535, or ``address`` is empty.
    ServingError
        ``app`` (default ``app.py`` beside the package) is missing.
    """
    if not 1 <= port <= 65535:
        msg = f"port: {port} is outside 1-65535"
        raise InvalidInputError(msg)
    if not address.strip():
        msg = "address: empty; expected an address such as 127.0.0.1 (this machine) or 0.0.0.0 (every interface)"
        raise InvalidInputError(msg)
    app = APP_DIR / "app.py" if app is None else app
    if not app.is_file():
        msg = f"app: {app} not found; serve runs the workbench of a repository checkout (pip install -e .)"
        raise ServingError(msg)
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", address,
            "--server.port", str(port)]


def serve(address: str = DEFAULT_ADDRESS, port: int = DEFAULT_PORT) -> NoReturn:
    """Check the address (:func:`check_serving`), then replace this process with the Streamlit server.

    The server reads ``.streamlit/config.toml`` beside ``app.py`` whatever the working folder.

    Raises
    ------
    ServingError
        See :func:`check_serving`.
    """
    command = streamlit_command(address, port)
    check_serving(address)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)  # the server takes over this process (signals, exit status, PID 1 in Docker)
