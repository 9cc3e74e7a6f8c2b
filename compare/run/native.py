"""``cnn-compare run --native``: the topics each framework runs as its users write them.

``cnn_common.framework.native_settings`` decides, per framework, which topics change its runs
(and why the others do not); this module reads the option, adds what the run's own start
options decide (``--init native``, ``--init-from``), and says it in one line per framework
before the runs start.
"""

from __future__ import annotations

import argparse

from cnn_common.conventions import NATIVE_TOPICS
from cnn_common.framework import native_settings
from cnn_common.spec import ModelSpec, TrainSpec
from compare.engine import registry


def native_argument(text: str) -> tuple[str, ...]:
    """``--native``: ``all`` or a comma-separated list of ``NATIVE_TOPICS``, in their order."""
    names = NATIVE_TOPICS if text.strip() == "all" else [n.strip() for n in text.split(",")]
    unknown = [name for name in names if name not in NATIVE_TOPICS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown topic(s) {', '.join(map(repr, unknown))}; use all or a comma-separated "
            f"list of: {', '.join(NATIVE_TOPICS)}"
        )
    return tuple(topic for topic in NATIVE_TOPICS if topic in names)


def native_plan(
    framework: str,
    topics: tuple[str, ...],
    init: str,
    init_from: str | None,
    model: ModelSpec,
    train: TrainSpec,
    gpu: bool = False,
) -> tuple[str, tuple[str, ...], dict[str, str]]:
    """``(init, native, skipped)`` of ``framework``'s runs: its start (``--init``, ``--init-from``
    and the ``init`` topic), the ``--native`` topics that change something for it, and why
    each of the others does not; ``gpu``: its runs can reach a GPU."""
    info = registry.get(framework)
    start, native, skipped = native_settings(info, topics, model, train, gpu)
    if init_from and "init" in topics:
        start, skipped = (
            "shared",
            {"init": "--init-from gives every framework its start", **skipped},
        )
    return ("native" if init == "native" else start), native, skipped


def native_line(framework: str, plan: tuple[str, tuple[str, ...], dict[str, str]]) -> str:
    """What ``--native`` hands back to ``framework`` (its ``native_plan``), and what it
    leaves, grouped by why."""
    start, native, skipped = plan
    groups: dict[str, list[str]] = {}
    for topic, why in skipped.items():
        if why.startswith("not applicable on a CPU"):
            why = "not applicable on a CPU"
        elif why.startswith("not applicable"):
            why = "not applicable to this spec"
        elif why.endswith(("is the spec's", "as the spec does")):
            why = "its own is the spec's"
        elif " has no " in why:
            why = "none of its own"
        groups.setdefault(why, []).append(topic)
    took = ", ".join((("init",) if start == "native" else ()) + native) or "nothing"
    left = "".join(f"; {why}: {', '.join(names)}" for why, names in groups.items())
    return f"{framework}: native {took}{left}"
