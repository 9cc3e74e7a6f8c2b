"""Where numpy_cnn's training step spends its time, beside PyTorch's, one thread each.

Both frameworks take ``--steps`` training steps (after two warm-up steps) on the same random
batches of 128 images from the same initial weights of ``--spec`` (default ``resnet_small``),
each step from a fresh optimiser state (as ``train_steps`` makes one), one thread each (run it
with ``OMP_NUM_THREADS=1`` so NumPy's BLAS uses one too). Prints the median step of each and
their ratio, then each side's most expensive functions: NumPy's from cProfile (a matrix
product is counted in the function that calls it), PyTorch's operators from torch.profiler.
Run it alone on the machine.

    OMP_NUM_THREADS=1 python benchmarks/bench_numpy_step_profile.py
    OMP_NUM_THREADS=1 python benchmarks/bench_numpy_step_profile.py --spec examples/vgg_small.yaml
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import numpy_cnn
import pytorch_cnn
from cnn_common.errors import run_cli
from cnn_common.spec_files import load_spec
from compare.engine.options import at_least

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BATCH = 128


def step_times(train: Callable[[list], object], batches: list, steps: int) -> list[float]:
    """Seconds of each of ``steps`` single training steps, after two warm-up steps."""
    train(batches[:2])
    times = []
    for i in range(steps):
        start = time.perf_counter()
        train([batches[i % len(batches)]])
        times.append(time.perf_counter() - start)
    return times


def numpy_functions(train: Callable[[list], object], batches: list, top: int) -> list[str]:
    """NumPy's ``top`` functions by their own time, in ms per step."""
    profile = cProfile.Profile()
    profile.runcall(train, batches)
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (calls, _, own s, total s, _)
    rows = sorted(stats.items(), key=lambda item: -item[1][2])[:top]
    per_step = 1000 / len(batches)
    return [
        f"  {own * per_step:7.2f} ms own {total * per_step:7.2f} ms total  {Path(file).name}:{name}"
        for (file, _, name), (_, _, own, total, _) in rows
    ]


def torch_operators(train: Callable[[list], object], batches: list, top: int) -> list[str]:
    """PyTorch's ``top`` operators by their own CPU time, in ms per step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(batches)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    per_step = 1 / 1000 / len(batches)  # microseconds -> ms per step
    return [f"  {e.self_cpu_time_total * per_step:7.2f} ms own  {e.key}" for e in events]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(EXAMPLES / "resnet_small.yaml"))
    parser.add_argument("--steps", type=int, default=12, help="timed steps (default: 12)")
    parser.add_argument("--top", type=int, default=12, help="functions listed (default: 12)")
    args = parser.parse_args()
    at_least("--steps", args.steps, 1)
    at_least("--top", args.top, 1)
    import torch

    torch.set_num_threads(1)
    model_spec, train_spec = load_spec(args.spec)
    rng = np.random.default_rng(0)
    batches = [
        (rng.random((BATCH, *model_spec.input_shape), dtype=np.float32), rng.integers(0, 10, BATCH))
        for _ in range(args.steps)
    ]
    numpy_model = numpy_cnn.build(model_spec, seed=train_spec.seed)
    torch_model = pytorch_cnn.build(model_spec, seed=train_spec.seed)
    pytorch_cnn.set_weights(torch_model, numpy_cnn.get_weights(numpy_model))
    trains = {
        "numpy": lambda b: numpy_cnn.train_steps(numpy_model, train_spec, b),
        "pytorch": lambda b: pytorch_cnn.train_steps(torch_model, train_spec, b),
    }
    medians = {
        name: statistics.median(step_times(t, batches, args.steps)) for name, t in trains.items()
    }
    print(
        f"{Path(args.spec).stem}, {BATCH} images a step, one thread: numpy "
        f"{medians['numpy'] * 1000:.1f} ms vs pytorch {medians['pytorch'] * 1000:.1f} ms "
        f"= {medians['numpy'] / medians['pytorch']:.2f}x (median of {args.steps} steps)"
    )
    print("numpy, by own time (cProfile):")
    print("\n".join(numpy_functions(trains["numpy"], batches, args.top)))
    print("pytorch, by own time (torch.profiler):")
    print("\n".join(torch_operators(trains["pytorch"], batches, args.top)))


if __name__ == "__main__":
    sys.exit(run_cli(main, "bench_numpy_step_profile.py"))
