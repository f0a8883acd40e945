"""Live Inference latency: from the moment a file is uploaded to the prediction shown on the page.

Measurement (fixed; do not change it without renaming it):

- ``streamlit run app.py`` on a free port with a fresh temporary ``RFLOCAL_WORKSPACE`` holding
  the shipped demo runs (``install_demo()``), the page opened in headless Chromium (Debian's,
  through Playwright, as ``tests/test_browser.py`` does), source "Upload a file";
- single-sample files: sample *i* of ``assets/example_measurements.json`` written as a file of
  its own (distinct sample ids), cycled so that every upload differs from the one before;
- per run (``demo-setnet``: the page's default selection; ``demo-knn``: chosen in the "Runs"
  multiselect of the same page session, ``demo-setnet`` removed): one warm-up upload (loads and
  caches the model), then ``--repeats`` timed uploads;
- one timed upload: wall time from just before ``set_input_files`` (the upload itself
  included) until the "Predicted position" metric shows exactly that sample's value (the
  value the core computes for it, which differs from the previous sample's) under the heading
  "Sample <id>"; polled on every animation frame in the page. ``rerun_done`` is also given:
  until the script run that rendered it has finished (map, tables and all sent);
- for comparison, the core-only path of one upload with a loaded run:
  ``load_measurements(bytes, on_error="collect")`` + ``infer.predict_measurements(run, ms,
  heatmaps=True)`` (what the page calls), median of ``--core-repeats``.

Two CPU cores; CUDA_VISIBLE_DEVICES is cleared. Goal of the Live Inference issue: under 1 s.

Run::

    .venv/bin/python bench/bench_inference.py               # about a minute on 2 cores
    .venv/bin/python bench/bench_inference.py --repeats 5 --core-repeats 50   # a smoke run

Prints a JSON object and writes it to ``bench/results/inference.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ["CUDA_VISIBLE_DEVICES"] = ""

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync",
]
GOAL_MS = 1000.0

# True once the metric shows exactly the expected value and the heading names the new sample.
SHOWN_JS = """([value, heading]) => {
    const values = [...document.querySelectorAll('[data-testid="stMetricValue"]')].map(e => e.innerText.trim());
    const heads = [...document.querySelectorAll('h3')].map(e => e.innerText.trim());
    return values.length === 1 && values[0] === value && heads.includes(heading);
}"""
IDLE_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app !== null && app.getAttribute('data-test-script-state') === 'notRunning';
}"""


def _stats(ms: list[float], digits: int = 1) -> dict[str, float]:
    import numpy as np

    return {"median_ms": round(statistics.median(ms), digits), "p90_ms": round(float(np.percentile(ms, 90)), digits),
            "min_ms": round(min(ms), digits), "max_ms": round(max(ms), digits), "count": len(ms)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_files(tmp: Path, count: int) -> list[tuple[Path, str]]:
    """Sample i of the example file as a single-sample file: ``[(path, sample_id), ...]``."""
    from rflocal_core.demo import EXAMPLE_FILE
    from rflocal_core.measurements import dump_measurements, load_measurements

    full = load_measurements(EXAMPLE_FILE)
    out = []
    for sample in full.samples[:count]:
        one = type(full)(full.mode, full.scene, full.nodes, (sample,), (), full.notes)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in sample.id)
        out.append((dump_measurements(one, tmp / f"sample-{safe}.json"), sample.id))
    return out


def _expected(run_id: str, files: list[tuple[Path, str]]) -> list[str]:
    """The metric text the page shows for each file: ``"lat, lon"`` with 6 decimals."""
    from rflocal_core import infer
    from rflocal_core.measurements import load_measurements

    run = infer.load_run(run_id)
    out = []
    for path, _ in files:
        row = infer.predict_measurements(run, load_measurements(path.read_bytes(), on_error="collect")).predictions[0]
        out.append(f"{row.lat:.6f}, {row.lon:.6f}")
    return out


def _start_server(workspace: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "RFLOCAL_WORKSPACE": str(workspace)}
    log = open(workspace / "streamlit.log", "w")  # noqa: SIM115 (the server's lifetime)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    msg = f"streamlit did not start: {(workspace / 'streamlit.log').read_text()[-2000:]}"
    raise SystemExit(msg)


def _choose_run(page, run_id: str) -> None:  # noqa: ANN001
    """Make ``run_id`` the only run of the "Runs" multiselect."""
    box = page.get_by_test_id("stMultiSelect").filter(has_text="Runs")

    def tags() -> list[str]:
        return [t.get_attribute("aria-label") for t in box.locator("[data-tag]").all()]

    if tags() == [run_id]:
        return
    if run_id not in tags():
        page.get_by_role("combobox", name="Runs").click()
        page.get_by_role("option", name=run_id, exact=True).click()
        page.keyboard.press("Escape")
        box.locator(f'[data-tag][aria-label="{run_id}"]').wait_for(timeout=30_000)
    for other in [t for t in tags() if t != run_id]:
        box.get_by_role("button", name=f"Remove {other}", exact=True).click()
        box.locator(f'[data-tag][aria-label="{other}"]').wait_for(state="detached", timeout=30_000)
    if tags() != [run_id]:
        msg = f"could not select only {run_id} in the Runs multiselect: {tags()}"
        raise RuntimeError(msg)


def _time_uploads(page, files: list[tuple[Path, str]], expected: list[str], repeats: int,  # noqa: ANN001
                  start: int) -> tuple[list[float], list[float], int]:
    """Warm-up upload of ``files[start]``, then ``repeats`` timed uploads of the next files."""
    shown, done = [], []
    k = start
    for i in range(repeats + 1):
        path, sid = files[k % len(files)]
        value = expected[k % len(files)]
        page.wait_for_function(IDLE_JS, timeout=60_000)
        t0 = time.perf_counter()
        page.locator("input[type=file]").set_input_files(str(path))
        page.wait_for_function(SHOWN_JS, arg=[value, f"Sample {sid}"], polling="raf", timeout=120_000)
        t1 = time.perf_counter()
        page.wait_for_function(IDLE_JS, polling="raf", timeout=120_000)
        t2 = time.perf_counter()
        if i > 0:  # the first is the warm-up (model load, first render)
            shown.append(1000 * (t1 - t0))
            done.append(1000 * (t2 - t0))
        k += 1
    return shown, done, k


def _page_bench(workspace: Path, run_ids: list[str], files: list[tuple[Path, str]], expected: dict[str, list[str]],
                repeats: int) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    proc, url = _start_server(workspace)
    out: dict[str, object] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(url)  # a deep link to /live_inference opens a modal "Page not found" over the page
            page.get_by_test_id("stSidebarNav").get_by_text("Live Inference").click()
            page.get_by_role("heading", name="Live Inference").wait_for(timeout=90_000)
            page.locator("input[type=file]").wait_for(state="attached", timeout=90_000)
            k = 0
            for run_id in run_ids:
                _choose_run(page, run_id)
                shown, done, k = _time_uploads(page, files, expected[run_id], repeats, k)
                out[run_id] = {**_stats(shown), "samples_ms": [round(v, 1) for v in shown],
                               "rerun_done": _stats(done)}
                print(f"page {run_id}: median {out[run_id]['median_ms']} ms, p90 {out[run_id]['p90_ms']} ms",
                      file=sys.stderr, flush=True)
            if page.get_by_test_id("stException").count():
                msg = f"the page shows an exception: {page.get_by_test_id('stException').first.inner_text()}"
                raise RuntimeError(msg)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def _core_bench(run_ids: list[str], files: list[tuple[Path, str]], repeats: int) -> dict[str, object]:
    from rflocal_core import infer
    from rflocal_core.measurements import load_measurements

    blobs = [path.read_bytes() for path, _ in files[:2]]
    out: dict[str, object] = {}
    for run_id in run_ids:
        run = infer.load_run(run_id)
        infer.predict_measurements(run, load_measurements(blobs[0], on_error="collect"), heatmaps=True)  # warm-up
        times = []
        for i in range(repeats):
            t0 = time.perf_counter()
            ms = load_measurements(blobs[i % 2], on_error="collect")
            infer.predict_measurements(run, ms, heatmaps=True)
            times.append(1000 * (time.perf_counter() - t0))
        out[run_id] = _stats(times, digits=3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed uploads per run (after one warm-up)")
    parser.add_argument("--core-repeats", type=int, default=200, help="core-path repetitions per run")
    parser.add_argument("--runs", default="demo-setnet,demo-knn", help="comma-separated demo run ids")
    parser.add_argument("--samples", type=int, default=10, help="distinct single-sample files cycled through")
    parser.add_argument("--out", default=str(HERE / "results" / "inference.json"))
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        raise SystemExit("Debian's chromium is not installed (make setup-test)")
    run_ids = [r.strip() for r in args.runs.split(",") if r.strip()]

    with tempfile.TemporaryDirectory(prefix="rflocal-bench-inference-") as tmp:
        workspace = Path(tmp) / "workspace"
        workspace.mkdir()
        os.environ["RFLOCAL_WORKSPACE"] = str(workspace)
        import streamlit
        import torch

        from rflocal_core import demo

        if not demo.demo_available():
            raise SystemExit("the shipped demo runs are missing in assets/demo: run `make demo-model`")
        demo.install_demo()
        files = _single_files(Path(tmp), max(2, args.samples))
        expected = {r: _expected(r, files) for r in run_ids}
        for r, values in expected.items():
            if any(a == b for a, b in zip(values, values[1:] + values[:1])):
                msg = f"{r}: two consecutive samples give the same displayed position; the wait would be ambiguous"
                raise SystemExit(msg)
        page = _page_bench(workspace, run_ids, files, expected, args.repeats)
        core = _core_bench(run_ids, files, args.core_repeats)

    result = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "streamlit": streamlit.__version__,
        "repeats": args.repeats,
        "samples_cycled": len(files),
        "goal_ms": GOAL_MS,
        "page_upload_to_prediction": page,
        "core_load_and_predict": core,
        "meets_goal": all(v["p90_ms"] < GOAL_MS for v in page.values()),
        "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
