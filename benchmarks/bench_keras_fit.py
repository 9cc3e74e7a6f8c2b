"""Keras on the shared batch order against a plain ``model.fit`` on arrays.

``keras_cnn.train`` as ``compare`` runs it (each epoch's images laid out in the shared batch
order by ``epoch_arrays``, one ``fit`` per epoch, the per-step recorder) against the same
training with Keras's own order (``native={"order"}``: one ``fit(x, y, batch_size=128,
shuffle=True)``): each epoch in a fresh process after a warm-up epoch, the two taking turns
(``compare.bench``). Prints the ratio of their steps; an epoch's time includes laying out its
arrays.

    python benchmarks/bench_keras_fit.py                     # 55,000 images, 3 processes each
"""

from __future__ import annotations

import sys

from cnn_common.errors import run_cli
from compare.bench.measure import paired_ratio
from compare.bench.scripts import Variant, script_measure, script_parser

TARGET = 1.05  # a step on the shared order at most this many times a plain fit's


def main() -> None:
    parser = script_parser(__doc__.splitlines()[0], train_images=55000, processes=3)
    args = parser.parse_args()
    shared, plain = Variant("keras"), Variant("keras", ("order",))
    result, rows = script_measure(args, [plain, shared], "keras_fit")
    a, b = rows[shared.label], rows[plain.label]
    turns = paired_ratio(result["records"][shared.label], result["records"][plain.label])
    print(
        f"step: shared order {a['step_ms']:.2f} ms vs plain fit {b['step_ms']:.2f} ms = "
        f"{a['step_ms'] / b['step_ms']:.3f}x, turn by turn {turns:.3f}x (target <= {TARGET}x)"
    )


if __name__ == "__main__":
    sys.exit(run_cli(main, "bench_keras_fit.py"))
