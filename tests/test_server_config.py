"""The server's own settings (.streamlit/config.toml): the workspace is not watched for changes.

Streamlit's default watcher (watchdog) watches app.py's folder recursively with inotify, and the
workspace sits in that folder: a dataset generation writes thousands of files there, which
overflowed the inotify queue and filled the server log with "Inotify queue overflowed" lines.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".streamlit" / "config.toml"


def test_config_keeps_the_workspace_out_of_the_file_watcher():
    server = tomllib.loads(CONFIG.read_text(encoding="utf-8"))["server"]
    # "poll" watches the source files one by one; "watchdog"/"auto" would watch the whole folder
    assert server.get("fileWatcherType") in ("poll", "none"), server.get("fileWatcherType")
    assert "workspace" in server.get("folderWatchBlacklist", []), server.get("folderWatchBlacklist")


def test_config_silences_the_warning_for_seeded_widgets():
    # widgets.py seeds a widget from its saved value through Session State on purpose (forms
    # remember); Streamlit would log a duplication warning for each such widget otherwise.
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    assert config["global"]["disableWidgetStateDuplicationWarning"] is True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inotify_inodes(pid: int) -> set[int]:
    """Inode numbers of every path the process watches with inotify (from /proc/PID/fdinfo)."""
    inodes = set()
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = info.read_text()
        except OSError:  # the descriptor closed meanwhile
            continue
        for line in text.splitlines():
            if line.startswith("inotify "):
                fields = dict(part.split(":", 1) for part in line.split()[1:] if ":" in part)
                inodes.add(int(fields["ino"], 16))
    return inodes


async def _watched_during_a_session(port: int, pid: int, hold_s: float) -> tuple[int, set[int]]:
    """Open a browser-like session, ask for a script run and read for ``hold_s``; then, with the
    session still open (closing it drops its watchers), read the inodes ``pid`` watches.

    Returns the number of messages received and those inodes."""
    import asyncio

    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg

    received = 0
    async with websockets.connect(f"ws://127.0.0.1:{port}/_stcore/stream", max_size=None) as ws:
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        await ws.send(msg.SerializeToString())
        end = time.monotonic() + hold_s
        while time.monotonic() < end:
            try:
                await asyncio.wait_for(ws.recv(), timeout=0.5)
                received += 1
            except TimeoutError:
                pass
        return received, _inotify_inodes(pid)


@pytest.mark.skipif(not Path("/proc/self/fdinfo").is_dir(), reason="needs Linux /proc to read inotify watches")
def test_running_server_does_not_watch_the_workspace(tmp_path):
    import asyncio

    pytest.importorskip("websockets")
    workspace = ROOT / "workspace"  # the default workspace, where the app writes unless told otherwise
    workspace.mkdir(exist_ok=True)
    port = _free_port()
    log = tmp_path / "streamlit.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1"],
            cwd=ROOT, env={**os.environ, "RFLOCAL_WORKSPACE": str(tmp_path / "ws")}, stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"streamlit did not start: {log.read_text()[-2000:]}")
        # the watchers are made for a session and its script run, not at start-up
        received, watched = asyncio.run(_watched_during_a_session(port, proc.pid, 6.0))
        assert received > 0, log.read_text()[-2000:]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    for path in (ROOT, workspace):
        assert path.stat().st_ino not in watched, f"the server watches {path} with inotify"
    assert "Inotify queue overflowed" not in log.read_text()
