"""Sum pytest's ``--durations=0`` lines per test file: the unit ``make test`` schedules (``--dist loadfile``).

Usage::

    .venv/bin/python -m pytest -q -n 2 --dist loadfile --durations=0 -p no:cacheprovider 2>&1 | tee dur.log
    .venv/bin/python scripts/durations_by_file.py dur.log

The browser test files are one unit, as in ``tests/conftest.py``; a module fixture's cost lands in the
setup of the first test that uses it, so it is counted in its file.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere: tests/ is importable
from tests.conftest import xdist_scope  # noqa: E402 (after the path): one definition of the unit

#: ``12.34s call     tests/test_x.py::test_y[case]`` (pytest's --durations report).
LINE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s+(setup|call|teardown)\s+(\S+?)::")


def per_file_seconds(text: str) -> dict[str, float]:
    """Seconds per scheduling unit from a log holding a ``--durations=0`` report."""
    totals: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            totals[xdist_scope(match.group(3))] += float(match.group(1))
    return dict(totals)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print(f"usage: durations_by_file.py LOG (a pytest log with --durations=0); got {argv}", file=sys.stderr)
        return 2
    totals = per_file_seconds(Path(argv[0]).read_text(encoding="utf-8", errors="replace"))
    if not totals:
        print(f"error: no --durations lines in {argv[0]} (run pytest with --durations=0)", file=sys.stderr)
        return 2
    print(f"{sum(totals.values()):9.1f} s in {len(totals)} units")
    for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"{seconds:9.1f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
