"""LitCNN's epoch time against the plain PyTorch loop's, measured side by side in one run.

Both train the same spec from the same initial weights on the same batches (so the run also
re-checks that their losses agree); each repetition runs the two back to back, alternating
which goes first. An epoch's time covers its training steps only (batch building included,
validation excluded), as the run record defines it. The Lightning side is ``lightning_cnn.train``
as ``compare`` runs it: per-step logging of loss and accuracy, CSV and TensorBoard loggers, a
checkpoint every epoch, the run recorder; ``--progress`` adds the progress bar.

    python benchmarks/bench_lightning_vs_torch.py                 # full MNIST, 3 x 2 epochs
    python benchmarks/bench_lightning_vs_torch.py --subset 10000 --repeats 5

The first epoch of each run is a warm-up and is left out of the medians. ``--overhead`` adds a
second measurement on a tiny model whose compute is negligible, which isolates Lightning's fixed
cost per step (ms).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repo

from lightning_cnn.reference import plain_torch_train  # noqa: E402

from cnn_common.data import Data, prepare_data, subset  # noqa: E402
from cnn_common.spec import ConvBlock, DenseLayer, ModelSpec, TrainSpec  # noqa: E402
from cnn_common.weights import init_weights  # noqa: E402
from lightning_cnn.train import train  # noqa: E402

TINY = ModelSpec(
    conv=(ConvBlock(filters=1, kernel_size=3, pool_size=4),), dense=(DenseLayer(units=4),)
)


def measure(
    spec: ModelSpec, train_spec: TrainSpec, data: Data, repeats: int, progress: bool, device: str
) -> dict[str, list[float]]:
    """Epoch times (warm-up epochs dropped) of both sides over ``repeats`` alternating runs."""
    weights = init_weights(spec, train_spec.seed, train_spec.dtype)
    times: dict[str, list[float]] = {"torch": [], "lightning": []}
    mismatches = 0
    for rep in range(repeats):
        order = ("torch", "lightning") if rep % 2 == 0 else ("lightning", "torch")
        losses = {}
        for side in order:
            if side == "torch":
                run = plain_torch_train(
                    spec,
                    train_spec,
                    data.x_train,
                    data.y_train,
                    weights,
                    device="cuda" if device == "gpu" else "cpu",
                )
                epoch_times, losses[side] = run.epoch_times, run.step_losses
            else:
                with (
                    tempfile.TemporaryDirectory() as out,
                    contextlib.redirect_stdout(io.StringIO()),
                ):
                    result = train(
                        spec,
                        train_spec,
                        data,
                        out,
                        init_weights=weights,
                        progress=progress,
                        device=device,
                    )
                epoch_times, losses[side] = result.epoch_times, result.step_losses
            times[side].extend(epoch_times[1:])
        mismatches += losses["torch"] != losses["lightning"]
    print(f"  losses identical step for step in {repeats - mismatches}/{repeats} repetitions")
    return times


def report(label: str, times: dict[str, list[float]], steps: int) -> None:
    plain, lit = statistics.median(times["torch"]), statistics.median(times["lightning"])
    print(
        f"  {label}: plain PyTorch {plain:.3f} s/epoch, Lightning {lit:.3f} s/epoch "
        f"(medians of {len(times['torch'])} epochs each)"
    )
    print(
        f"  per step: plain {1000 * plain / steps:.2f} ms, Lightning {1000 * lit / steps:.2f} ms"
        f" (+{1000 * (lit - plain) / steps:.2f} ms)"
    )
    print(f"  ratio Lightning / plain: {lit / plain:.3f}x   (target <= 1.10x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, help="first N training images (default: all)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (first = warm-up)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--progress", action="store_true", help="Lightning's progress bar on")
    parser.add_argument("--overhead", action="store_true", help="also time a tiny model")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--data-dir", help="folder holding mnist/ (default: $CNN_DATA_DIR)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = prepare_data("mnist", root=args.data_dir)
    if args.subset:
        data = subset(data, args.subset)
    train_spec = TrainSpec(epochs=max(args.epochs, 2))
    steps = -(-len(data.x_train) // train_spec.batch_size)
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads; "
        f"{len(data.x_train)} images, {steps} steps/epoch, {args.repeats} repetitions "
        f"of {train_spec.epochs} epochs; progress bar {'on' if args.progress else 'off'}"
    )
    print("seed model:")
    report(
        "seed model",
        measure(ModelSpec(), train_spec, data, args.repeats, args.progress, args.device),
        steps,
    )
    if args.overhead:
        print("tiny model (compute negligible: the fixed cost per step):")
        report(
            "tiny model",
            measure(TINY, train_spec, data, args.repeats, args.progress, args.device),
            steps,
        )
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
