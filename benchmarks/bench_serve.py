"""The explorer's speed: drawing updates with several clients drawing at once, and how soon
the page is usable.

Starts ``cnn-compare serve`` on a results folder (default ``runs/compare``, the default three
frameworks), warms its workers with one request, then ``--clients`` threads each draw a digit
stroke by stroke, sending one update (``/api/predict`` with the drawing: every framework's
prediction and feature maps) as soon as the last one returned, ``--updates`` each. Prints the
median and 95th percentile of an update's round trip against the 150 ms goal, and the
throughput. Then, where Chromium is installed, opens the page in headless Chromium and prints
the time until the page is usable (the folder's summary shown and the pad drawable) and until
the first prediction is shown, against the 1 s goal. Run it alone on the machine.

    python benchmarks/bench_serve.py
    python benchmarks/bench_serve.py --dir runs/compare --frameworks numpy,keras,lightning
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from cnn_common.errors import UserError, run_cli
from compare.engine.options import at_least
from compare.serve.process import serving

UPDATE_GOAL_MS, PAGE_GOAL_S = 150.0, 1.0
SIZE = 140  # the drawing the page sends: 140x140 bytes of ink


def strokes(seed: int, updates: int) -> list[str]:
    """``updates`` drawings (base64), a stroke growing by one segment each."""
    rng = np.random.default_rng(seed)
    ink = np.zeros((SIZE, SIZE), np.uint8)
    y, x = rng.integers(30, 110, size=2)
    out = []
    for _ in range(updates):
        dy, dx = rng.integers(-12, 13, size=2)
        for t in np.linspace(0, 1, 8):
            cy, cx = int(np.clip(y + t * dy, 8, SIZE - 9)), int(np.clip(x + t * dx, 8, SIZE - 9))
            ink[cy - 7 : cy + 8, cx - 7 : cx + 8] = 255
        y, x = np.clip(y + dy, 20, SIZE - 21), np.clip(x + dx, 20, SIZE - 21)
        out.append(base64.b64encode(ink.tobytes()).decode())
    return out


def client(
    host: str, port: int, drawings: list[str], times: list[float], errors: list[str]
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=120)
    for data in drawings:
        body = json.dumps({"drawing": {"width": SIZE, "height": SIZE, "data": data}})
        start = time.perf_counter()
        conn.request(
            "POST", "/api/predict", body=body, headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        answer = json.loads(response.read())
        times.append(time.perf_counter() - start)
        failed = [
            f"{n}: {r['error']}" for n, r in answer.get("results", {}).items() if "error" in r
        ]
        if response.status != 200 or failed:
            errors.append(f"{response.status} {failed or answer}")


def page_times(address: str) -> tuple[float, float] | None:
    """Seconds from opening the page to usable, and to the first prediction; None without
    Chromium."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(address)
        page.wait_for_function(
            "() => document.getElementById('about').textContent.includes('test images')"
        )
        usable = time.perf_counter() - start
        page.wait_for_selector(".framework .guess")
        first = time.perf_counter() - start
        browser.close()
    return usable, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("runs/compare"), help="results folder")
    parser.add_argument("--frameworks", default="numpy,keras,lightning", help="frameworks served")
    parser.add_argument("--clients", type=int, default=8, help="clients drawing at once")
    parser.add_argument("--updates", type=int, default=40, help="updates per client")
    parser.add_argument("--data-dir", type=Path, help="dataset folder (None: $CNN_DATA_DIR)")
    args = parser.parse_args()
    at_least("--clients", args.clients, 1)
    at_least("--updates", args.updates, 1)
    if not args.dir.is_dir():
        raise UserError(f"{args.dir} is not a folder", "give the --out folder of a cnn-compare run")
    with serving(args.dir, args.data_dir, "--frameworks", args.frameworks) as (address, _):
        parts = urlsplit(address)
        warm = [[], []]
        client(parts.hostname, parts.port, strokes(99, 3), *warm)  # starts every worker
        if warm[1]:
            raise SystemExit(f"the warm-up failed: {warm[1][0]}")
        times: list[float] = []
        errors: list[str] = []
        threads = [
            threading.Thread(
                target=client,
                args=(parts.hostname, parts.port, strokes(k, args.updates), times, errors),
            )
            for k in range(args.clients)
        ]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
        ms = sorted(1000 * t for t in times)
        p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
        verdict = "met" if p95 <= UPDATE_GOAL_MS else "MISSED"
        print(
            f"drawing updates ({args.frameworks}), {args.clients} clients x {args.updates}: "
            f"median {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms "
            f"(goal p95 <= {UPDATE_GOAL_MS:.0f} ms: {verdict}); "
            f"{len(ms) / wall:.1f} updates/s; {len(errors)} failed"
        )
        for line in errors[:5]:
            print(f"  failed: {line}")
        timed = page_times(address)
        if timed is None:
            print("page: not timed (no /usr/bin/chromium)")
        else:
            usable, first = timed
            print(
                f"page: usable after {usable:.2f} s (goal <= {PAGE_GOAL_S:.0f} s: "
                f"{'met' if usable <= PAGE_GOAL_S else 'MISSED'}), first prediction after "
                f"{first:.2f} s"
            )


if __name__ == "__main__":
    sys.exit(run_cli(main, "bench_serve.py"))
