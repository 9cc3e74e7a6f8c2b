"""How much of ``cnn-compare run``'s wall time is not training, and where it goes.

Runs ``cnn-compare run`` (the default run unless ARGS say otherwise) from this checkout and,
with ``--against DIR``, from another checkout of the project (its code on ``PYTHONPATH``, the
same environment), the two taking turns so that a drift of the machine touches them alike.
For each run it prints the wall time of the whole command, the training time (the sum of
every run's training epochs, from the run records: the steps only), their difference, the
time outside training, as a share of the training time, and that time split by what the
results folder's file times show:

- ``start``: from the command's start to the first job (reading the data, starting workers);
- ``runs``: inside the training jobs, outside their epochs (imports of a fresh worker,
  building the model, validation and test evaluation, the feature maps, writing the files);
- ``between``: from one run's last file to the next job;
- ``crosseval``: the cross-evaluation;
- ``report``: from the cross-evaluation (or the last run) to the command's end.

Run it alone on the machine: anything else running makes every share larger.

    python benchmarks/bench_run_overhead.py --against ../before --rounds 2
    python benchmarks/bench_run_overhead.py -- --frameworks numpy,pytorch --subset 5000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnn_common.errors import run_cli
from cnn_common.results import RESULT_FILE
from compare.engine.layout import CROSSEVAL_FILE, FEATURES_FILE, JOB_FILE, RUNS_DIR
from compare.engine.options import at_least

HERE = Path(__file__).resolve().parent.parent
PARTS = ("start", "runs", "between", "crosseval", "report")


def timed_run(checkout: Path, out: Path, args: list[str]) -> dict[str, float]:
    """One ``cnn-compare run`` from ``checkout`` into ``out``: its wall time, training time and
    the time outside training by part."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    command = [sys.executable, "-m", "compare", "run", "--quiet", "--out", str(out), *args]
    started = time.time()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, cwd=out.parent)
    ended = time.time()
    runs = sorted(
        (path for path in (out / RUNS_DIR).iterdir() if (path / RESULT_FILE).is_file()),
        key=lambda path: (path / JOB_FILE).stat().st_mtime,
    )
    training = inside = between = 0.0
    last_end = None
    for path in runs:
        record = json.loads((path / RESULT_FILE).read_text())
        epochs = sum(record["epoch_times"])
        sent = (path / JOB_FILE).stat().st_mtime
        done = max((path / name).stat().st_mtime for name in (RESULT_FILE, FEATURES_FILE))
        training += epochs
        inside += done - sent - epochs
        if last_end is not None:
            between += sent - last_end
        last_end = done
    first = (runs[0] / JOB_FILE).stat().st_mtime
    crosseval_file = out / CROSSEVAL_FILE
    crosseval = crosseval_file.stat().st_mtime - last_end if crosseval_file.is_file() else 0.0
    wall = ended - started
    return {
        "wall": wall,
        "training": training,
        "outside": wall - training,
        "start": first - started,
        "runs": inside,
        "between": between,
        "crosseval": crosseval,
        "report": ended - (last_end + crosseval),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--against", type=Path, help="another checkout to time side by side")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each checkout")
    parser.add_argument(
        "--cold", action="store_true", help="run this checkout with --no-warm-workers"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep every results folder here (<checkout>-<turn>)"
    )
    parser.add_argument("args", nargs="*", help="arguments for cnn-compare run (after --)")
    options = parser.parse_args()
    at_least("--rounds", options.rounds, 1)
    checkouts = {"this": HERE}
    if options.against is not None:
        checkouts["against"] = options.against.resolve()
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        for turn in range(options.rounds):
            for name, checkout in checkouts.items():
                out = Path(tmp) / f"{name}-{turn}"
                cold = ["--no-warm-workers"] if options.cold and name == "this" else []
                result = timed_run(checkout, out, [*options.args, *cold])
                if options.keep is not None:
                    shutil.copytree(out, options.keep / out.name, dirs_exist_ok=True)
                shutil.rmtree(out)
                measured[name].append(result)
                share = result["outside"] / result["training"]
                print(
                    f"{name:8s} turn {turn}: wall {result['wall']:6.1f} s  training "
                    f"{result['training']:6.1f} s  outside {result['outside']:5.1f} s "
                    f"({share:.1%})  " + "  ".join(f"{part} {result[part]:.1f}" for part in PARTS),
                    flush=True,
                )
    print("\nmedians:")
    for name, results in measured.items():
        median = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(
            f"{name:8s} wall {median['wall']:6.1f} s  training {median['training']:6.1f} s  "
            f"outside {median['outside']:5.1f} s ({median['outside'] / median['training']:.1%})"
            "  " + "  ".join(f"{part} {median[part]:.1f}" for part in PARTS)
        )
    if "against" in measured:
        ratios = [
            this["outside"] / other["outside"]
            for this, other in zip(measured["this"], measured["against"], strict=True)
        ]
        print(f"time outside training, this / against, turn by turn: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "bench_run_overhead.py"))
