"""numpy_cnn against the plain PyTorch loop: training epoch and inference, side by side.

Both frameworks train the default spec (or ``--spec``'s) from the same initial weights on the
same shared batches with the same threads, each epoch in a fresh process after a warm-up
epoch, the two taking turns (``compare.bench``, the code ``cnn-compare bench`` runs). Prints
the ratios of the median epoch and of inference, the peak memory of each, and where a step's
time goes.

    python benchmarks/bench_numpy_vs_torch.py            # 55,000 images, 3 processes each
    python benchmarks/bench_numpy_vs_torch.py --train-images 12800 --processes 5
    python benchmarks/bench_numpy_vs_torch.py --spec examples/resnet_small.yaml
"""

from __future__ import annotations

import sys

from cnn_common.errors import run_cli
from compare.bench.scripts import Variant, script_measure, script_parser

TARGET = 1.5  # numpy_cnn's epoch and inference at most this many times PyTorch's


def main() -> None:
    parser = script_parser(__doc__.splitlines()[0], train_images=55000, processes=3)
    args = parser.parse_args()
    _, rows = script_measure(args, [Variant("pytorch"), Variant("numpy")], "numpy_vs_torch")
    numpy, torch = rows["numpy"], rows["pytorch"]
    print(
        f"training epoch: numpy {numpy['epoch_s']:.3f} s vs pytorch {torch['epoch_s']:.3f} s "
        f"= {numpy['train_time_ratio']:.2f}x, turn by turn {numpy['paired_time_ratio']:.2f}x "
        f"(target <= {TARGET}x)"
    )
    if "infer_time_ratio" in numpy:
        print(
            f"inference: numpy {numpy['infer_images_per_s']:,.0f} vs pytorch "
            f"{torch['infer_images_per_s']:,.0f} images/s = {numpy['infer_time_ratio']:.2f}x "
            f"(target <= {TARGET}x)"
        )
    print(
        f"peak memory: numpy {numpy['train_peak_rss_mib']:.0f} MiB vs pytorch "
        f"{torch['train_peak_rss_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    sys.exit(run_cli(main, "bench_numpy_vs_torch.py"))
