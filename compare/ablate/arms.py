"""The arms of an ablation: for each framework, the baseline and one arm per factor, each
saying what it changes, or why the framework has nothing of its own to change there; and the
stages of the cumulative mode, which align one topic at a time from everything native."""

from __future__ import annotations

from dataclasses import dataclass

from cnn_common.conventions import CONVENTION_TOPICS, NATIVE_TOPICS
from cnn_common.errors import UserError
from cnn_common.framework import FrameworkInfo, native_settings, not_native_here
from cnn_common.spec import ModelSpec, TrainSpec
from compare.engine import registry

BASELINE = "baseline"
NOISE_FLOORS = ("threads", "ulp")  # factors that change no default at all
# Every topic a framework decides for itself (cnn_common.conventions), then the noise floors.
TOPIC_FACTORS = ("init", "order", "padding", *CONVENTION_TOPICS)
FACTORS = (*TOPIC_FACTORS, *NOISE_FLOORS)
assert set(TOPIC_FACTORS) == set(NATIVE_TOPICS)
STAGE = "stage"  # the cumulative mode's arms: stage0 (all native) ... stageN (all aligned)


@dataclass(frozen=True)
class Arm:
    """One arm for one framework: what it changes, or why it is not run.

    ``same_as``: an arm that is not run because another of the same settings is (a cumulative
    stage that changes nothing for this framework); its outcomes are that arm's.
    """

    framework: str
    factor: str  # baseline, one of FACTORS, or a cumulative stage (stage<k>)
    runs: bool  # False: the framework has no default of its own here (``why`` says so)
    why: str = ""
    init: str = "shared"
    native: tuple[str, ...] = ()  # train(native=...)
    threads: int | None = None  # None: the run's thread count
    same_as: str = ""

    @property
    def settings(self) -> tuple[str, frozenset[str], int | None]:
        """What decides the arm's runs: two arms with the same settings train the same."""
        return self.init, frozenset(self.native), self.threads

    @property
    def source(self) -> str:
        """The arm whose run folders hold this arm's outcomes."""
        return self.same_as or self.factor


def check_factors(names: list[str]) -> tuple[str, ...]:
    """The factors named on the command line, validated; raise ``UserError`` otherwise."""
    unknown = [name for name in names if name not in FACTORS]
    if unknown or not names:
        raise UserError(
            f"unknown factor(s): {', '.join(repr(name) for name in unknown or names)}",
            f"use a comma-separated list of: {', '.join(FACTORS)}",
        )
    return tuple(dict.fromkeys(names))


def topic_arm(
    info: FrameworkInfo,
    factor: str,
    spec: ModelSpec,
    train: TrainSpec,
    threads: int,
    gpu: bool = False,
) -> Arm:
    """The arm that hands ``factor`` back to ``info``'s framework (a noise floor: changes no
    default); ``threads`` is the run's thread count (the ``threads`` arm runs one); ``gpu``:
    the runs can reach a GPU (the ``tf32`` and ``deterministic`` arms need one)."""
    name = info.name
    if factor == "threads":
        if threads > 1:
            return Arm(name, factor, True, threads=1)
        return Arm(name, factor, False, "the run already uses one thread")
    if factor == "ulp":
        return Arm(name, factor, True, init="shared-ulp")
    why = not_native_here(info, factor, spec, train, gpu)
    if why:
        return Arm(name, factor, False, why)
    if factor == "init":
        return Arm(name, factor, True, init="native")
    return Arm(name, factor, True, native=(factor,))


def plan_arms(
    frameworks: tuple[str, ...],
    factors: tuple[str, ...],
    spec: ModelSpec,
    train: TrainSpec,
    threads: int,
    gpu: bool = False,
) -> list[Arm]:
    """The baseline and every factor in ``factors``, for every framework, in table order;
    ``threads`` and ``gpu`` as for ``topic_arm``."""
    arms = []
    for name in frameworks:
        info = registry.get(name)
        arms.append(Arm(name, BASELINE, True))
        arms += [topic_arm(info, factor, spec, train, threads, gpu) for factor in factors]
    return arms


def stage_topics(factors: tuple[str, ...]) -> tuple[str, ...]:
    """The topics the cumulative mode aligns, in the order it aligns them."""
    return tuple(factor for factor in factors if factor not in NOISE_FLOORS)


def plan_stages(
    frameworks: tuple[str, ...],
    factors: tuple[str, ...],
    spec: ModelSpec,
    train: TrainSpec,
    planned: list[Arm],
    gpu: bool = False,
) -> list[Arm]:
    """The cumulative mode's arms: stage ``k`` has the first ``k`` topics of ``factors``
    aligned (the spec's) and the rest native; stage 0 is everything native, the last stage is
    the baseline. A stage whose settings an arm of ``planned`` (or an earlier stage) already
    has is not run again: it reads that arm's runs (``same_as``). ``gpu`` as for ``topic_arm``."""
    topics = stage_topics(factors)
    stages = []
    for name in frameworks:
        info = registry.get(name)
        known = {arm.settings: arm.factor for arm in planned if arm.framework == name and arm.runs}
        for k in range(len(topics) + 1):
            init, native, _ = native_settings(info, topics[k:], spec, train, gpu)
            arm = Arm(name, f"{STAGE}{k}", True, init=init, native=native)
            if arm.settings in known:
                source = known[arm.settings]
                arm = Arm(name, arm.factor, False, f"the runs of {source}", init, native,
                          same_as=source)  # fmt: skip
            else:
                known[arm.settings] = arm.factor
            stages.append(arm)
    return stages
