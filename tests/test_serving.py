"""Safe serving defaults (issue 20): loopback by default; another address only with sign-in or RFLOCAL_AUTH=none.

The launcher (``python -m rflocal_core serve``, which ``make run`` calls) refuses a non-loopback address
without sign-in (exit 2, one line); ``make run`` listens on 127.0.0.1 only (read from the kernel's
socket table); ``app.py`` refuses too when a server was started by hand, and shows the opt-out as a banner.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from rflocal_core import serving
from rflocal_core.errors import InvalidInputError, ServingError

ROOT = Path(__file__).resolve().parents[1]
AUTH_VARS = (serving.AUTH_ENV, serving.PASSWORD_ENV, serving.PASSWORD_HASH_ENV)


@pytest.fixture
def no_auth(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No sign-in configured: the auth variables unset and an empty home (no ~/.streamlit/secrets.toml)."""
    for name in AUTH_VARS:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def _secrets(tmp_path: Path, text: str) -> list[Path]:
    path = tmp_path / "secrets.toml"
    path.write_text(text, encoding="utf-8")
    return [path]


# --------------------------------------------------------------------------- addresses

@pytest.mark.parametrize("address", ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]",
                                     "::ffff:127.0.0.1"])
def test_loopback_addresses(address):
    assert serving.is_loopback(address)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "", None, "192.168.1.20", "10.0.0.1", "::ffff:10.0.0.1",
                                     "example.org", "localhost.example.org", "fe80::1"])
def test_addresses_that_reach_other_machines(address):
    assert not serving.is_loopback(address)


# --------------------------------------------------------------------------- which sign-in

def test_nothing_configured_is_unset(no_auth, tmp_path):
    assert serving.auth_mode(files=[tmp_path / "missing.toml"]) == "unset"
    assert serving.auth_mode(files=_secrets(tmp_path, "[other]\nkey = 1\n")) == "unset"


@pytest.mark.parametrize("name", [serving.PASSWORD_ENV, serving.PASSWORD_HASH_ENV])
def test_a_password_variable_is_password(no_auth, monkeypatch, tmp_path, name):
    monkeypatch.setenv(name, "s3cret")
    assert serving.auth_mode(files=[]) == "password"


def test_a_password_hash_in_the_secrets_is_password(no_auth, tmp_path):
    files = _secrets(tmp_path, '[rflocal]\npassword_hash = "pbkdf2_sha256$1$salt$hash"\n')
    assert serving.auth_mode(files=files) == "password"
    assert serving.auth_mode(files=_secrets(tmp_path, '[rflocal]\npassword_hash = ""\n')) == "unset"


def test_an_auth_section_is_oidc_and_wins_over_a_password(no_auth, monkeypatch, tmp_path):
    files = _secrets(tmp_path, '[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\n'
                               '[rflocal]\npassword_hash = "x"\n')
    monkeypatch.setenv(serving.PASSWORD_ENV, "s3cret")
    assert serving.auth_mode(files=files) == "oidc"


def test_the_opt_out_is_none_and_configured_sign_in_wins_over_it(no_auth, monkeypatch, tmp_path):
    monkeypatch.setenv(serving.AUTH_ENV, "none")
    assert serving.auth_mode(files=[]) == "none"
    monkeypatch.setenv(serving.AUTH_ENV, " None ")
    assert serving.auth_mode(files=[]) == "none"
    monkeypatch.setenv(serving.PASSWORD_ENV, "s3cret")
    assert serving.auth_mode(files=[]) == "password"  # the safe side: a configured password still applies


def test_an_unknown_opt_out_value_is_refused(no_auth, monkeypatch):
    monkeypatch.setenv(serving.AUTH_ENV, "off")
    with pytest.raises(ServingError, match=r"RFLOCAL_AUTH='off': expected 'none'"):
        serving.auth_mode(files=[])


def test_a_broken_secrets_file_is_named(no_auth, tmp_path):
    files = _secrets(tmp_path, "[rflocal\npassword_hash = \n")
    with pytest.raises(ServingError, match=r"secrets\.toml: not valid TOML"):
        serving.auth_mode(files=files)


def test_the_default_secrets_files_are_streamlits(no_auth, monkeypatch, tmp_path):
    """Home, working folder and app folder, as Streamlit reads them; a later file's section wins."""
    work = tmp_path / "work"
    (work / ".streamlit").mkdir(parents=True)
    monkeypatch.chdir(work)
    files = serving.secrets_files(app_dir=tmp_path / "app")
    assert files == [no_auth / ".streamlit" / "secrets.toml", work / ".streamlit" / "secrets.toml",
                     tmp_path / "app" / ".streamlit" / "secrets.toml"]
    assert serving.secrets_files(app_dir=work) == files[:2]  # the app folder is the working folder: once
    (no_auth / ".streamlit").mkdir()
    (no_auth / ".streamlit" / "secrets.toml").write_text('[rflocal]\npassword_hash = "x"\n', encoding="utf-8")
    (work / ".streamlit" / "secrets.toml").write_text('[rflocal]\nroles = "viewer"\n', encoding="utf-8")
    assert serving.read_secrets(files) == {"rflocal": {"roles": "viewer"}}
    assert serving.auth_mode(files=files) == "unset"



def test_a_secrets_folder_is_read_as_streamlit_reads_it(no_auth, tmp_path):
    """A folder in Streamlit's ``secrets.files`` (Kubernetes style): an [auth] mounted there is the sign-in."""
    folder = tmp_path / "mounted"
    for key, value in {"redirect_uri": "https://rf.lab.org/oauth2callback", "cookie_secret": "c",
                       "client_id": "id", "client_secret": "s",
                       "server_metadata_url": "https://id.lab.org/.well-known/openid-configuration"}.items():
        (folder / "auth").mkdir(parents=True, exist_ok=True)
        (folder / "auth" / key).write_text(value + "\n", encoding="utf-8")
    (folder / "token").mkdir()
    (folder / "token" / "value").write_text(" t0k3n \n", encoding="utf-8")
    secrets = serving.read_secrets([folder])
    assert secrets["auth"]["redirect_uri"] == "https://rf.lab.org/oauth2callback"
    assert secrets["token"] == "t0k3n"  # one file: the value itself, as Streamlit collapses it
    assert serving.auth_mode(files=[folder]) == "oidc"
    (folder / "stray.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ServingError, match=r"mounted: stray\.txt is not a folder"):
        serving.auth_mode(files=[folder])


# --------------------------------------------------------------------------- the check

def test_check_refuses_other_machines_without_sign_in(no_auth):
    for address in ("0.0.0.0", "192.168.1.20", None):
        with pytest.raises(ServingError) as err:
            serving.check_serving(address, files=[])
        text = str(err.value)
        assert (repr(address) if address else "every interface") in text
        assert "RFLOCAL_AUTH=none" in text and "RFLOCAL_PASSWORD=" in text and "[auth]" in text
        assert "\n" not in text
    assert isinstance(err.value, RuntimeError)


def test_check_allows_loopback_sign_in_or_the_opt_out(no_auth, monkeypatch):
    serving.check_serving("127.0.0.1", files=[])
    assert serving.check_app("localhost", files=[]) is None
    monkeypatch.setenv(serving.PASSWORD_ENV, "s3cret")
    assert serving.check_app("0.0.0.0", files=[]) is None  # sign-in configured: no banner
    monkeypatch.delenv(serving.PASSWORD_ENV)
    monkeypatch.setenv(serving.AUTH_ENV, "none")
    banner = serving.check_app("0.0.0.0", files=[])
    assert banner is not None and "RFLOCAL_AUTH=none" in banner and "'0.0.0.0'" in banner
    assert serving.open_warning("127.0.0.1", files=[]) is None  # this machine only: nothing to warn of


def test_streamlit_command_checks_port_and_app(tmp_path):
    command = serving.streamlit_command("127.0.0.1", 8502)
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(command[4]) == ROOT / "app.py"
    assert command[5:] == ["--server.address", "127.0.0.1", "--server.port", "8502"]
    for port in (0, 65536):
        with pytest.raises(InvalidInputError, match=f"port: {port} is outside 1-65535"):
            serving.streamlit_command("127.0.0.1", port)
    with pytest.raises(ServingError, match="not found"):
        serving.streamlit_command("127.0.0.1", 8502, app=tmp_path / "app.py")


def test_config_binds_loopback_for_a_bare_streamlit_run():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["address"] == "127.0.0.1"


def test_secrets_stay_out_of_git_and_the_image():
    for name in (".gitignore", ".dockerignore"):
        assert ".streamlit/secrets.toml" in (ROOT / name).read_text(encoding="utf-8").split(), name


def test_the_image_serves_through_the_checking_launcher():
    cmd = [line for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines() if line.startswith("CMD")]
    assert cmd == ['CMD ["python", "-m", "rflocal_core", "serve", "--address", "0.0.0.0", "--port", "8501"]']


# --------------------------------------------------------------------------- the launcher, started for real

def _clean_env(tmp_path: Path) -> dict[str, str]:
    """This environment without sign-in, with an empty home and workspace; the worktree on the path."""
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS and not k.startswith("STREAMLIT_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), RFLOCAL_WORKSPACE=str(tmp_path / "ws"),
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif((ROOT / ".streamlit" / "secrets.toml").exists(), reason="a local secrets file may configure sign-in")
def test_launcher_refuses_every_interface_without_sign_in(tmp_path):
    port = _free_port()
    proc = subprocess.run([sys.executable, "-m", "rflocal_core", "serve", "--address", "0.0.0.0", "--port", str(port)],
                          check=False, cwd=tmp_path, env=_clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "'0.0.0.0'" in lines[0] and "RFLOCAL_AUTH=none" in lines[0] and "RFLOCAL_PASSWORD" in lines[0]
    with socket.socket() as s:  # nothing was started
        assert s.connect_ex(("127.0.0.1", port)) != 0


def _listening(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    out = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # the kernel prints each 32-bit word in host (little-endian) byte order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out.add(socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, raw))
    return out


def _listening_addresses(command: list[str], *, cwd: Path, env: dict[str, str], port: int, log: Path) -> set[str]:
    """Start ``command`` (a server on ``port``), wait until it answers, return where it listens; stop it."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the server did not start: {log.read_text()[-2000:]}")
        return _listening(port)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _outside_make() -> dict[str, str]:
    """The environment without the variables of a calling make (``make test`` runs this suite): a nested
    make would print "Entering/Leaving directory" lines and inherit its flags."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp to read listening sockets")
def test_make_run_listens_on_loopback_only(tmp_path):
    """``make run``'s own command (its setup step left out), started for real."""
    port = _free_port()
    try:
        dry = subprocess.run(["make", "--no-print-directory", "-n", "run", f"PORT={port}", f"PY={sys.executable}"],
                             cwd=ROOT, env=_outside_make(), capture_output=True, text=True, timeout=60,
                             check=True).stdout
    except FileNotFoundError:
        pytest.skip("make is not installed")
    command = shlex.split(dry.strip().splitlines()[-1])
    assert command[1:] == ["-m", "rflocal_core", "serve", "--address", "127.0.0.1", "--port", str(port)]
    other = subprocess.run(["make", "--no-print-directory", "-n", "run", "ADDRESS=0.0.0.0", f"PY={sys.executable}"],
                           cwd=ROOT, env=_outside_make(), capture_output=True, text=True, timeout=60,
                           check=True).stdout
    assert other.strip().splitlines()[-1].endswith("serve --address 0.0.0.0 --port 8501")  # the deliberate choice
    log = tmp_path / "server.log"
    assert _listening_addresses(command, cwd=ROOT, env=_clean_env(tmp_path), port=port, log=log) == {"127.0.0.1"}
    assert "Network URL" not in log.read_text()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp to read listening sockets")
def test_a_bare_streamlit_run_listens_on_loopback_only(tmp_path):
    """``streamlit run app.py`` without an address, from another folder: config.toml beside app.py applies."""
    port = _free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port)]
    listening = _listening_addresses(command, cwd=tmp_path, env=_clean_env(tmp_path), port=port,
                                     log=tmp_path / "server.log")
    assert listening == {"127.0.0.1"}


# --------------------------------------------------------------------------- app.py, for a server started by hand

@pytest.fixture
def server_address():
    """Set Streamlit's ``server.address`` for an AppTest run (as ``--server.address`` would), then restore it."""
    from streamlit import config

    old = config.get_option("server.address")

    def set_address(address: str) -> None:
        config.set_option("server.address", address)

    yield set_address
    config.set_option("server.address", old)


@pytest.mark.skipif((ROOT / ".streamlit" / "secrets.toml").exists(), reason="a local secrets file may configure sign-in")
def test_app_on_every_interface_without_sign_in_shows_only_the_refusal(no_auth, workspace, server_address):
    from streamlit.testing.v1 import AppTest

    server_address("0.0.0.0")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert len(at.error) == 1
    text = at.error[0].value
    assert "'0.0.0.0'" in text and "RFLOCAL_AUTH=none" in text and "RFLOCAL_PASSWORD" in text
    assert not at.warning and not at.title and not at.button  # no page ran


@pytest.mark.skipif((ROOT / ".streamlit" / "secrets.toml").exists(), reason="a local secrets file may configure sign-in")
def test_app_with_the_opt_out_shows_a_banner_over_the_workbench(no_auth, workspace, monkeypatch, server_address):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(serving.AUTH_ENV, "none")
    server_address("0.0.0.0")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert not at.error
    assert any("Sign-in is off" in w.value and "RFLOCAL_AUTH=none" in w.value for w in at.warning)
    assert at.title and at.title[0].value  # the Overview ran below the banner
    server_address("127.0.0.1")  # this machine only: the opt-out needs no banner
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not any("Sign-in is off" in w.value for w in at.warning)
