"""numpy_cnn's training epoch against a plain PyTorch loop's, side by side in one run.

Both sides train the same model (the default spec unless --spec), from the same canonical
initial weights, on the same data in the same batch order (``cnn_common.batches``), with the
same number of threads (``torch.set_num_threads`` and numpy_cnn's shards = the usable cores).
Every epoch runs in a fresh child process (no thread pool or allocator of one side lingers in
the other's), and the sides alternate (numpy, torch, numpy, torch, ...) so that load from
other processes hits both alike. The script prints every epoch time, the medians, their ratio
and each side's peak resident memory while training (Linux: /proc).

    python benchmarks/bench_numpy_vs_torch.py [--reps 3] [--subset N] [--data-dir DIR]

The plain PyTorch loop is ``lightning_cnn.reference.plain_torch_train``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cnn_common.data import Data, prepare_data, subset
from cnn_common.spec import ModelSpec, TrainSpec, load_spec
from cnn_common.weights import init_weights


def load(args: argparse.Namespace, train_spec: TrainSpec) -> Data:
    data = prepare_data("mnist", train_spec.validation_size, train_spec.seed, args.data_dir)
    # Validation and test sets are not timed: keep them tiny so the benchmark spends its time
    # on training epochs.
    return subset(data, args.subset or len(data.x_train), 0, 100)


def specs(args: argparse.Namespace) -> tuple[ModelSpec, TrainSpec]:
    return load_spec(args.spec) if args.spec else (ModelSpec(), TrainSpec())


def numpy_epoch(spec: ModelSpec, train_spec: TrainSpec, data: Data) -> float:
    """One numpy_cnn training epoch via ``numpy_cnn.train``: the time of its training steps."""
    import numpy_cnn

    weights = init_weights(spec, train_spec.seed, train_spec.dtype)
    one = dataclasses.replace(train_spec, epochs=1)
    with tempfile.TemporaryDirectory() as out:
        result = numpy_cnn.train(spec, one, data, out, init_weights=weights, progress=False)
    return result.history[0].time_s


def torch_epoch(spec: ModelSpec, train_spec: TrainSpec, data: Data) -> float:
    """One epoch of the plain PyTorch loop on the same weights and batches."""
    from lightning_cnn.reference import plain_torch_train

    weights = init_weights(spec, train_spec.seed, train_spec.dtype)
    run = plain_torch_train(spec, train_spec, data.x_train, data.y_train, weights, epochs=1)
    return run.epoch_times[0]


def _status_mib(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def child(args: argparse.Namespace) -> None:
    """One side's epoch in its own process; prints ``epoch_seconds peak_mib rss_before_mib``.

    The kernel's RSS high-water mark is reset once the data is loaded, so the peak is that of
    training (loading and decompressing the files does not count).
    """
    model, train_spec = specs(args)
    data = load(args, train_spec)
    if args.side == "torch":
        import torch

        torch.set_num_threads(cores())
    before = _status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    epoch = numpy_epoch if args.side == "numpy" else torch_epoch
    seconds = epoch(model, train_spec, data)
    print(f"{seconds:.4f} {_status_mib('VmHWM'):.1f} {before:.1f}")


def cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def run_side(args: argparse.Namespace, side: str) -> tuple[float, float, float]:
    command = [sys.executable, __file__, "--side", side]
    for flag in ("subset", "data_dir", "spec"):
        value = getattr(args, flag)
        if value is not None:
            command += [f"--{flag.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds, peak, before = (float(v) for v in done.stdout.split()[-3:])
    return seconds, peak, before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="epochs per side (alternating)")
    parser.add_argument("--subset", type=int, help="train on the first N images only")
    parser.add_argument("--data-dir", help="folder holding mnist/ (default $CNN_DATA_DIR)")
    parser.add_argument("--spec", type=Path, help="model/train spec file (default: the seed)")
    parser.add_argument("--side", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        child(args)
        return

    import numpy
    import torch

    from numpy_cnn import parallel

    print(
        f"{args.subset or 55_000} images, {cores()} cores: torch threads {cores()}, "
        f"numpy_cnn shards {parallel.workers()}; numpy {numpy.__version__}, "
        f"torch {torch.__version__}; each epoch in a fresh process"
    )
    numpy_runs, torch_runs = [], []
    for rep in range(args.reps):
        numpy_runs.append(run_side(args, "numpy"))
        torch_runs.append(run_side(args, "torch"))
        print(
            f"rep {rep + 1}: numpy {numpy_runs[-1][0]:.2f} s   torch {torch_runs[-1][0]:.2f} s",
            flush=True,
        )
    numpy_median = statistics.median(r[0] for r in numpy_runs)
    torch_median = statistics.median(r[0] for r in torch_runs)
    print(f"median epoch: numpy_cnn {numpy_median:.2f} s, plain PyTorch {torch_median:.2f} s")
    print(f"ratio numpy/torch: {numpy_median / torch_median:.2f}x (target <= 2.0x)")
    for name, runs in (("numpy_cnn", numpy_runs), ("PyTorch", torch_runs)):
        peak = max(r[1] for r in runs)
        before = statistics.median(r[2] for r in runs)
        print(
            f"{name} peak RSS during a training epoch: {peak:.0f} MiB "
            f"({before:.0f} MiB with the data loaded, before training)"
        )


if __name__ == "__main__":
    main()
