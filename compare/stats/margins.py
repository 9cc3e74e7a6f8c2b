"""The equivalence margins: how far apart two frameworks may be and still count as equivalent.

``--margin accuracy=0.5,loss=0.02`` (either part alone keeps the other's default): test
accuracy in points, test loss in nats. The defaults are fixed, so that a verdict means the
same in every folder:

- **0.5 accuracy points**, 50 of MNIST's 10,000 test images, and **0.02 nats of test loss**.
  Smaller differences are ones a reseed of a single framework makes as well: in the default
  ablation (three frameworks, 5 seeds, 1 epoch on 20,000 images), changing only the batch
  order moved one framework's accuracy with a standard deviation over the seeds of 0.6 to
  0.8 points, and its loss of 0.016 to 0.024 nats.

A folder keeps the margins it was analysed with (``config.json``'s ``margin``);
``cnn-compare report DIR --margin ...`` analyses it again with others.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from cnn_common.errors import UserError

FIX = "give --margin accuracy=POINTS,loss=NATS with positive numbers, e.g. accuracy=0.5,loss=0.02"


@dataclass(frozen=True)
class Margins:
    """Equivalence margins: ``accuracy`` in points, ``loss`` in nats."""

    accuracy: float = 0.5
    loss: float = 0.02

    def of(self, metric: str) -> float:
        """The margin in the metric's stored unit (accuracy as a fraction)."""
        return self.accuracy / 100 if metric == "accuracy" else self.loss

    def text(self, metric: str) -> str:
        return f"±{self.accuracy:g} points" if metric == "accuracy" else f"±{self.loss:g} nats"

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Margins:
        """The margins a folder's configuration names, the defaults where it names none."""
        saved = (config or {}).get("margin") or {}
        return cls(**{k: float(v) for k, v in saved.items() if k in ("accuracy", "loss")})


def parse_margin(text: str, base: Margins | None = None) -> Margins:
    """``"accuracy=0.5,loss=0.02"`` (or one part) -> ``Margins``; a bad one raises
    ``UserError`` naming it."""
    values = (base or Margins()).to_dict()
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, number = part.partition("=")
        name = name.strip()
        if not sep or name not in values:
            raise UserError(f"--margin: cannot read {part!r} (names: accuracy, loss)", FIX)
        try:
            value = float(number)
        except ValueError:
            raise UserError(f"--margin: {name}={number!r} is not a number", FIX) from None
        if not value > 0 or value == float("inf"):
            raise UserError(f"--margin: {name} must be a positive number, got {number}", FIX)
        values[name] = value
    return Margins(**values)


def margin_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--margin",
        metavar="accuracy=POINTS,loss=NATS",
        help="how close two frameworks must be to count as equivalent (default "
        f"accuracy={Margins().accuracy:g},loss={Margins().loss:g}; either part alone keeps "
        "the other; with --resume, the folder's own)",
    )


def margin_from(args: argparse.Namespace, saved: dict[str, Any] | None = None) -> Margins:
    """The margins given (``--margin``, over the folder's saved ones), else the saved ones,
    else the defaults."""
    base = Margins.from_config(saved)
    return parse_margin(args.margin, base) if getattr(args, "margin", None) else base
