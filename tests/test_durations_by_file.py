"""scripts/durations_by_file.py: pytest's --durations report summed per scheduling unit (file; browser files one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

#: Lines of a real report (2026-12-03 run, -n 2 --dist loadfile --durations=0), with the summary around them.
REPORT = """============================= slowest durations ==============================
210.53s call     tests/test_iq_heimdall.py::test_iq_branch_learns_where_the_emitter_is
165.20s call     tests/test_browser_walkthrough.py::test_scene_to_metrics_walkthrough
23.48s setup    tests/test_browser_map.py::test_box_map_draws_offline_and_fills_the_field
1.91s call     tests/test_iq_heimdall.py::test_slot_order_and_checkpoint_round_trip
0.01s teardown tests/test_bad_inputs.py::test_api_rejects[bad scene name]
(630 durations < 0.005s hidden.  Use -vv to show these durations.)
1 failed, 1359 passed, 1 xfailed in 1057.33s (0:17:37)
"""


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("durations_by_file", REPO_ROOT / "scripts" / "durations_by_file.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seconds_are_summed_per_file_and_the_browser_files_are_one_unit() -> None:
    totals = _script().per_file_seconds(REPORT)
    assert totals == pytest.approx({"tests/test_iq_heimdall.py": 212.44, "browser": 188.68,
                                    "tests/test_bad_inputs.py": 0.01})


def test_a_log_without_durations_is_exit_2_with_one_line(tmp_path: Path) -> None:
    log = tmp_path / "plain.log"
    log.write_text("1 passed in 0.1s\n")
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "durations_by_file.py"), str(log)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert "--durations=0" in proc.stderr
