"""The arms of an ablation: for each framework, the baseline and one arm per factor, each
saying what it changes, or why the framework has nothing of its own to change there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnn_common.errors import UserError
from cnn_common.spec import ModelSpec, TrainSpec, layers, native_pads
from compare.engine import registry

BASELINE = "baseline"
FACTORS = ("init", "epsilon", "order", "padding", "threads", "ulp")
NOISE_FLOORS = ("threads", "ulp")  # factors that change no default at all


@dataclass(frozen=True)
class Arm:
    """One arm for one framework: what it changes, or why it is not run."""

    framework: str
    factor: str  # baseline or one of FACTORS
    runs: bool  # False: the framework has no default of its own here (``why`` says so)
    why: str = ""
    init: str = "shared"
    native: tuple[str, ...] = ()
    train_changes: tuple[tuple[str, Any], ...] = ()
    threads: int | None = None  # None: the run's thread count


def check_factors(names: list[str]) -> tuple[str, ...]:
    """The factors named on the command line, validated; raise ``UserError`` otherwise."""
    unknown = [name for name in names if name not in FACTORS]
    if unknown or not names:
        raise UserError(
            f"unknown factor(s): {', '.join(repr(name) for name in unknown or names)}",
            f"use a comma-separated list of: {', '.join(FACTORS)}",
        )
    return tuple(dict.fromkeys(names))


def plan_arms(
    frameworks: tuple[str, ...],
    factors: tuple[str, ...],
    spec: ModelSpec,
    train: TrainSpec,
    threads: int,
) -> list[Arm]:
    """The baseline and every factor in ``factors``, for every framework, in table order;
    ``threads`` is the run's thread count (the ``threads`` arm runs one)."""
    arms = []
    for name in frameworks:
        info = registry.get(name)
        arms.append(Arm(name, BASELINE, True))
        for factor in factors:
            if factor == "init":
                arm = (
                    Arm(name, factor, True, init="native")
                    if info.native_init
                    else Arm(name, factor, False, f"{name} has no initialisers of its own")
                )
            elif factor == "epsilon":
                native = info.native_epsilon
                if train.optimizer != "adam":
                    arm = Arm(name, factor, False, f"the run uses {train.optimizer}, not Adam")
                elif native is None:
                    arm = Arm(name, factor, False, f"{name} has no Adam epsilon of its own")
                elif native == (train.epsilon, train.epsilon_convention):
                    arm = Arm(name, factor, False, f"{name}'s own epsilon is the spec's")
                else:
                    changes = (("epsilon", native[0]), ("epsilon_convention", native[1]))
                    arm = Arm(name, factor, True, native=("optimizer",), train_changes=changes)
            elif factor == "order":
                arm = Arm(name, factor, True, native=("order",))
            elif factor == "padding":
                if not any(layer.padding == "same" for layer in layers(spec)):
                    arm = Arm(name, factor, False, "not applicable: the spec has no 'same' padding")
                elif not native_pads(spec, info.padding_convention):
                    why = f"{name} places this spec's 'same' padding as the spec does"
                    arm = Arm(name, factor, False, why)
                else:
                    arm = Arm(name, factor, True, native=("padding",))
            elif factor == "threads":
                arm = (
                    Arm(name, factor, True, threads=1)
                    if threads > 1
                    else Arm(name, factor, False, "the run already uses one thread")
                )
            else:  # ulp
                arm = Arm(name, factor, True, init="shared-ulp")
            arms.append(arm)
    return arms
