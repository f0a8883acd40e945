"""What the real-browser tests share: Debian's Chromium through Playwright, and ``streamlit run app.py``
on a free 127.0.0.1 port until it answers its health check."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync",
)
#: The marks of every browser test module.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make setup-test)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(workspace: Path, *, log_path: Path | None = None, env: Mapping[str, str] | None = None,
              extra_args: Sequence[str] = (), port: int | None = None) -> Iterator[str]:
    """``streamlit run app.py`` on 127.0.0.1 with ``$RFLOCAL_WORKSPACE`` = ``workspace``; yields its URL.

    ``env``: the server's whole environment (default: this one); ``log_path``: its output
    (default: ``workspace/streamlit.log``)."""
    port = port or free_port()
    log_path = log_path or workspace / "streamlit.log"
    full_env = {**(os.environ if env is None else env), "RFLOCAL_WORKSPACE": str(workspace)}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
             "--server.headless", "true", "--server.address", "127.0.0.1",
             # Nothing edits the source during a test; watching it only adds inotify storms that
             # stall the server when other work fills the disk.
             "--server.fileWatcherType", "none", *extra_args],
            cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, proc, log_path)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def _wait_healthy(url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float = 90) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"streamlit did not start: {log_path.read_text()[-2000:]}")


@contextlib.contextmanager
def launch_chromium(args: Sequence[str] = CHROMIUM_ARGS) -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (``executable_path``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(args))
        try:
            yield browser
        finally:
            browser.close()


def wait_idle(page: Any, timeout_ms: int = 120_000) -> None:
    """Wait until the app has finished the rerun a click started (Streamlit's running indicator is gone)."""
    page.wait_for_timeout(400)  # let a rerun that was just triggered start
    page.get_by_test_id("stStatusWidget").get_by_text("Running").wait_for(state="hidden", timeout=timeout_ms)
