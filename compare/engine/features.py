"""The features of ``cnn-compare``: every ``Feature`` registered under the
``cnn_rosetta.features`` entry-point group, whoever installed it.

A feature (``run``, ``parity``, ``bench``, ...) is one sub-package that declares in one
``Feature`` what the rest needs to know: its command (a module with ``configure(parser)``,
``main(args) -> int`` and, optionally, ``DESCRIPTION``, its ``--help`` text), its job types
with the function that runs each in a worker, and its report sections with their place in the
report. ``compare.__main__`` builds its parser from this registry and the worker finds a job's
handler here: neither names a feature, so adding a command is one new sub-package plus its
entry point (``docs/frameworks.md`` shows the same for frameworks).

Modules are named by ``"package.module"`` and functions by ``"package.module:function"``, as
entry points are, and imported only when used: a worker imports the one task it runs, not every
command and report section.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from compare.engine import registry
from compare.engine.jobs import BatchJob, Job

GROUP = "cnn_rosetta.features"


@dataclass(frozen=True)
class Feature:
    """What one feature adds to ``cnn-compare``.

    ``command`` is None for a feature that has no command of its own (the statistics, the
    cross-evaluation that ``run`` starts). ``jobs`` maps each job type to its handler,
    ``(job, on_event) -> None``. ``sections`` pairs a place in the report (lower first) with a
    function ``(found: Collected, figures_dir: Path) -> list[Section]``; ``summary`` names a
    function ``(found: Collected) -> list[str]`` whose lines the terminal prints after the
    report is written; ``order`` places the command in ``cnn-compare --help``.
    """

    name: str  # the command: cnn-compare <name>
    help: str = ""  # its line in cnn-compare --help
    command: str | None = None  # module with configure(parser), main(args) -> int, DESCRIPTION
    jobs: Mapping[type[Job], str] = field(default_factory=dict)  # job type -> handler
    sections: tuple[tuple[int, str], ...] = ()  # (place, "module:function")
    summary: str | None = None  # "module:function": the terminal's lines about the folder
    order: int = 100

    @classmethod
    def in_package(
        cls,
        package: str,
        *,
        help: str,
        order: int,
        job: type[Job] | None = None,
        sections: tuple[tuple[int, str], ...] = (),
    ) -> Feature:
        """The command feature of the sub-package ``package`` (its ``__name__``), laid out
        as every feature is: named as its folder, its command in ``<package>.command``,
        ``job``'s handler ``run_<kind>_task`` in ``<package>.task``, each section function
        (``(place, name)``) in ``<package>.section``."""
        return cls(
            name=package.rpartition(".")[2],
            help=help,
            command=f"{package}.command",
            jobs={job: f"{package}.task:run_{job.kind}_task"} if job else {},
            sections=tuple((place, f"{package}.section:{name}") for place, name in sections),
            order=order,
        )


# The engine's own job: several jobs of one framework in one worker process.
ENGINE = Feature(name="engine", jobs={BatchJob: "compare.engine.worker:run_batch"})


def resolve(target: str) -> Any:
    """``"package.module:attribute"`` -> the attribute; ``"package.module"`` -> the module."""
    module, _, attribute = target.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded


@functools.cache
def features() -> dict[str, Feature]:
    """Every registered feature by name, commands in ``order`` (the engine's own first)."""
    return registry.declarations(GROUP, Feature, "feature", ENGINE)


def commands() -> list[Feature]:
    """The features that add a command, in ``cnn-compare --help`` order."""
    return [feature for feature in features().values() if feature.command]


@functools.cache
def job_types() -> dict[str, type[Job]]:
    """Every registered job type by its ``kind``."""
    return {cls.kind: cls for feature in features().values() for cls in feature.jobs}


def job_from_json(text: str) -> Job:
    """A job as ``Job.to_json`` wrote it, of any registered kind."""
    return Job.from_json(text, job_types())


def handler(kind: str) -> Callable[..., None]:
    """The function that runs a job of ``kind`` in a worker: ``(job, on_event) -> None``."""
    for feature in features().values():
        for cls, target in feature.jobs.items():
            if cls.kind == kind:
                return resolve(target)
    raise KeyError(f"no feature registers the job kind {kind!r}")


def report_summaries() -> list[Callable[..., list[str]]]:
    """Every feature's terminal summary, in the order of the features."""
    return [resolve(f.summary) for f in features().values() if f.summary]


def report_sections() -> list[Callable[..., list[Any]]]:
    """Every feature's report sections, in report order."""
    placed = [(place, target) for f in features().values() for place, target in f.sections]
    return [resolve(target) for _, target in sorted(placed)]
