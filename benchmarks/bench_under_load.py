"""Each framework's training epoch on an idle machine and beside a CPU hog.

The hog is another process multiplying matrices with PyTorch on every core
(``compare.bench.measure.cpu_hog``). Each framework trains 5,000 images, each epoch in a fresh
process after a warm-up epoch (``compare.bench``), first on the idle machine, then beside the hog.
Prints each framework's loaded / idle epoch ratio and whether its record flags the machine as
busy. PyTorch's OpenMP threads spin while they wait, which collapses under load; on a busy
machine ``cnn_common.machine.set_openmp_wait_policy`` makes them sleep soon.

    python benchmarks/bench_under_load.py                    # lightning, pytorch, numpy
"""

from __future__ import annotations

import sys

from cnn_common.errors import run_cli
from cnn_common.machine import usable_cores
from compare.bench.measure import cpu_hog
from compare.bench.scripts import Variant, script_measure, script_parser

TARGET = 3.0  # an epoch beside the hog at most this many times the idle one


def main() -> None:
    parser = script_parser(__doc__.splitlines()[0], train_images=5000, processes=3)
    parser.add_argument("--frameworks", default="lightning,pytorch,numpy")
    args = parser.parse_args()
    args.infer_images, args.phase_steps = 0, 0
    variants = [Variant(name) for name in args.frameworks.split(",")]
    _, idle = script_measure(args, variants, "idle")
    with cpu_hog(usable_cores()):
        _, loaded = script_measure(args, variants, "loaded")
    for variant in variants:
        a, b = idle[variant.label], loaded[variant.label]
        print(
            f"{variant.label}: idle {a['epoch_s']:.3f} s, beside the hog {b['epoch_s']:.3f} s "
            f"= {b['epoch_s'] / a['epoch_s']:.2f}x (target <= {TARGET}x); flagged busy: "
            f"idle {a['busy']}, loaded {b['busy']}"
        )


if __name__ == "__main__":
    sys.exit(run_cli(main, "bench_under_load.py"))
