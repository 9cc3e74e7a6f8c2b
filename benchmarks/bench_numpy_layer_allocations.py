"""numpy_cnn's batchnorm, add and pooling steps: what each allocates per training step.

Each operation runs forward and backward on the maps of ``resnet_small`` (or ``--spec``'s)
for a whole training batch, first once to fill its workspace, then ``--repeats`` times under
``tracemalloc`` (NumPy reports its array buffers there). Prints, per operation, the peak
memory allocated during one call against the size of one activation map of that layer: an
operation that allocates nothing large stays far below one map (its per-channel statistics
and small temporaries only).

    python benchmarks/bench_numpy_layer_allocations.py
    python benchmarks/bench_numpy_layer_allocations.py --spec examples/vgg_small.yaml
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cnn_common.errors import run_cli
from cnn_common.spec import TrainSpec, layers
from cnn_common.spec_files import load_spec
from compare.engine.options import at_least
from numpy_cnn import norm, ops, pooling

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LARGE = 0.25  # "large": a quarter of one activation map of the layer, or more


def peak_bytes(call: Callable[[], object], repeats: int) -> int:
    """The largest peak of traced memory over ``repeats`` calls (after one warm-up call)."""
    call()
    worst = 0
    for _ in range(repeats):
        tracemalloc.start()
        call()
        worst = max(worst, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=EXAMPLES / "resnet_small.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    at_least("--repeats", args.repeats, 1)
    model, train = load_spec(args.spec)
    batch = train.batch_size if isinstance(train, TrainSpec) else 128
    rng = np.random.default_rng(0)
    rows = []
    for layer in layers(model):
        if layer.kind not in ("batchnorm", "add", "pool", "avgpool", "global_avgpool"):
            continue
        x = rng.standard_normal((batch, *layer.input_shape)).astype(np.float32)
        ws = ops.Workspace()
        if layer.kind == "batchnorm":
            c = layer.input_shape[-1]
            gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)

            def step(x=x, gamma=gamma, beta=beta, ws=ws, eps=layer.epsilon) -> None:
                out, cache = norm.batchnorm_forward(x, gamma, beta, eps, ws=ws)
                norm.batchnorm_backward(out, cache, ws)

        elif layer.kind == "add":
            other = rng.standard_normal(x.shape).astype(np.float32)

            def step(x=x, other=other, ws=ws) -> None:
                out = ops.add_forward(x, other, ws)
                ops.add_backward(out)

        elif layer.kind == "pool":

            def step(x=x, layer=layer, ws=ws) -> None:
                out, cache = pooling.maxpool_forward(x, layer.kernel_size, layer.stride, ws)
                pooling.maxpool_backward(out, cache, ws)

        elif layer.kind == "avgpool":

            def step(x=x, layer=layer, ws=ws) -> None:
                out, cache = pooling.avgpool_forward(x, layer.kernel_size, layer.stride, ws)
                pooling.avgpool_backward(out, cache, ws)

        else:

            def step(x=x, ws=ws) -> None:
                out, cache = pooling.global_avgpool_forward(x)
                pooling.global_avgpool_backward(out, cache, ws)

        peak = peak_bytes(step, args.repeats)
        rows.append((layer.name, layer.kind, x.nbytes, peak))
    print(f"{args.spec.name}, batch {batch}, float32: peak allocated in one forward + backward")
    print(f"{'layer':<16} {'kind':<15} {'map KiB':>9} {'peak KiB':>9} {'peak/map':>9}")
    for name, kind, map_bytes, peak in rows:
        ratio = peak / map_bytes
        flag = "  LARGE" if ratio >= LARGE else ""
        print(
            f"{name:<16} {kind:<15} {map_bytes / 1024:>9.0f} {peak / 1024:>9.1f} "
            f"{ratio:>9.3f}{flag}"
        )
    large = [name for name, _, map_bytes, peak in rows if peak / map_bytes >= LARGE]
    print(
        f"{len(rows) - len(large)} of {len(rows)} operations allocate under {LARGE:.0%} of one "
        f"map per step" + (f"; large: {', '.join(large)}" if large else "")
    )


if __name__ == "__main__":
    sys.exit(run_cli(main, "bench_numpy_layer_allocations.py"))
