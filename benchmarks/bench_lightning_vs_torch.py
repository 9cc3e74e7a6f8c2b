"""Lightning against the plain PyTorch loop: what the Trainer costs per step.

``lightning_cnn.train`` as ``compare`` runs it (per-step logging, the CSV and TensorBoard
loggers, a checkpoint every epoch, the run recorder) against ``pytorch_cnn.train``, the loop a
PyTorch user writes, on the same tensors with the same optimiser: each epoch in a fresh
process after a warm-up epoch, the two taking turns (``compare.bench``). Prints the epoch
ratio, Lightning's cost in ms per step, whether the per-step losses are bit-identical, and
each step by phase (from Lightning's hooks) beside the plain loop's.

    python benchmarks/bench_lightning_vs_torch.py            # 55,000 images, 3 processes each
"""

from __future__ import annotations

import sys

from cnn_common.errors import run_cli
from compare.bench.measure import same_step_losses
from compare.bench.scripts import Variant, script_measure, script_parser

TARGET = 1.08  # Lightning's epoch at most this many times the plain loop's


def main() -> None:
    parser = script_parser(__doc__.splitlines()[0], train_images=55000, processes=3)
    args = parser.parse_args()
    variants = [Variant("pytorch"), Variant("lightning")]
    result, rows = script_measure(args, variants, "lightning_vs_torch")
    lit, plain = rows["lightning"], rows["pytorch"]
    print(
        f"training epoch: lightning {lit['epoch_s']:.3f} s vs plain pytorch "
        f"{plain['epoch_s']:.3f} s = {lit['train_time_ratio']:.3f}x (target <= {TARGET}x); "
        f"turn by turn {lit['paired_time_ratio']:.3f}x; Lightning's cost "
        f"{lit['step_ms'] - plain['step_ms']:+.2f} ms per step"
    )
    same = same_step_losses(result["records"]["lightning"], result["records"]["pytorch"])
    print(f"per-step losses bit-identical: {same}")


if __name__ == "__main__":
    sys.exit(run_cli(main, "bench_lightning_vs_torch.py"))
