"""``cnn-compare run``: train each framework (and seed), one process each, keep every result.

Each run lands in ``OUT/runs/<framework>-seed<S>/`` (``compare.engine.layout``) as soon as it
finishes, so a crash, a kill or a framework that is not installed loses nothing else;
``--resume`` runs only what is missing, with the configuration saved in ``OUT/config.json``.

``--seeds auto:MAX`` trains in rounds until every pair of frameworks is resolved
(``compare.run.rounds``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnn_common.cli import add_device_arguments, init_from_argument, specs_from_args
from cnn_common.conventions import NATIVE_TOPICS
from cnn_common.data import split_sizes
from cnn_common.errors import EXIT_USER_ERROR, FrameworkMissingError, UserError
from cnn_common.files import atomic_write_json
from cnn_common.gpu import gpu_here
from cnn_common.machine import thread_setting
from cnn_common.memory import available_memory, check_fits, framework_estimate, human
from cnn_common.schedule import describe
from cnn_common.spec import ModelSpec, TrainSpec, spec_from_dict, spec_to_dict
from cnn_common.transfer import transfer_weights
from compare.crosseval.evaluate import run_crosseval
from compare.engine import registry
from compare.engine.executors import LocalExecutor, RayExecutor, make_executor
from compare.engine.launch import read_failure
from compare.engine.layout import CONFIG_FILE, WALL_FILE, run_dir
from compare.engine.lock import FolderLock
from compare.engine.options import (
    PROG,
    SweepOptions,
    add_arguments,
    check_out,
    executor_arguments,
    folder_arguments,
    from_args,
    read_config,
    sweep_fields,
)
from compare.engine.pool import WorkerPool
from compare.engine.progress import RunDisplay
from compare.engine.worker import write_failure
from compare.report.collect import completed
from compare.report.outputs import write_outputs
from compare.run.job import TrainJob
from compare.run.native import native_argument, native_line, native_plan
from compare.run.rounds import next_round, seed_plan, seeds_argument
from compare.stats.inference import look_schedule
from compare.stats.margins import Margins, margin_argument, margin_from

DESCRIPTION = (
    "Train every framework (and seed) in a process of its own; write results.json, "
    "history.csv, report.md, report.html and figures/ into --out."
)


@dataclass(frozen=True, kw_only=True)
class RunOptions(SweepOptions):
    """Everything ``cnn-compare run`` was asked to do."""

    init: str = "shared"
    native: tuple[str, ...] = ()  # topics run with each framework's own conventions
    init_from: str | None = None  # a trained run whose matching layers every framework loads
    device: str = "auto"
    out: Path = Path("runs/compare")
    in_process: bool = False
    warm_workers: bool = True  # one long-lived worker per framework (compare.engine.pool)
    devices: int = 1  # DDP processes (or GPUs) for the frameworks that can
    first_seeds: int = 0  # with --seeds auto:MAX (seeds = MAX): the first round's seeds, else 0
    margin: Margins = Margins()  # how close two frameworks must be to count as equivalent

    @property
    def rounds(self) -> list[int]:
        """The seed counts after which the verdicts are looked at: one, all the seeds, unless
        the seeds run in rounds (``--seeds auto:MAX``)."""
        if not self.first_seeds:
            return [self.seeds]
        return look_schedule(self.first_seeds, self.seeds)

    def config(self) -> dict[str, Any]:
        """The part of the options that decides the results (``--resume`` reads it back),
        with the margins the folder is analysed with and, for rounds of seeds, their plan."""
        plan = {"first": self.first_seeds, "max": self.seeds, "looks": len(self.rounds)}
        rounds = {"sequential": plan} if self.first_seeds else {}
        return {
            "frameworks": list(self.frameworks),
            "dataset": self.dataset,
            "init": self.init,
            "native": list(self.native),
            # only when given: a folder saved before --init-from existed resumes as it was
            **({"init_from": self.init_from} if self.init_from else {}),
            "device": self.device,
            "subset": self.subset,
            "eval_subset": self.eval_subset,
            "seeds": self.seeds,
            "devices": self.devices,
            **rounds,
            "margin": self.margin.to_dict(),
            **spec_to_dict(self.model_spec, self.train_spec),
        }


def framework_plan(options: RunOptions, framework: str) -> tuple[str, tuple[str, ...], dict]:
    """``(init, native, skipped)`` of ``framework``'s runs (``compare.run.native``)."""
    gpu = gpu_here(options.device)
    return native_plan(framework, options.native, options.init, options.init_from,
                       options.model_spec, options.train_spec, gpu)  # fmt: skip


def train_job(options: RunOptions, framework: str, seed: int) -> TrainJob:
    """The job that trains ``framework`` on ``seed`` into its run folder."""
    init, native, _ = framework_plan(options, framework)
    return options.job(
        TrainJob,
        framework,
        run_dir(options.out, framework, seed),
        train_spec=dataclasses.replace(options.train_spec, seed=seed),
        seed=seed,
        subset=options.subset,
        eval_subset=options.eval_subset,
        init=init,
        native=list(native),
        init_from=options.init_from,
        device=options.device,
        devices=options.devices,
        resume=True,  # continue from the folder's checkpoints if a killed run left any
    )


def run(options: RunOptions, log: Callable[[str], None] = print) -> int:
    """Train every (framework, seed) that is not done yet; then write results and report.

    Returns 0 when every run succeeded, 2 when one failed for a user error (e.g. a framework
    not installed), 1 when one crashed. ``OUT/.lock`` keeps a second run out of the folder
    meanwhile (``compare.lock``); Ctrl-C stops the worker, keeps the finished runs and says
    how to resume.
    """
    log(memory_needs(options))
    if options.init_from:  # a bad run is refused here, before the folder is touched
        start = transfer_weights(options.model_spec, options.train_spec, options.init_from)
        log(start.plan.describe())
    if words := describe(options.train_spec):
        log(f"every framework trains with {words}")
    for name in options.frameworks if options.native else ():
        log(native_line(name, framework_plan(options, name)))
    resume = f"cnn-compare run --resume --out {shlex.quote(str(options.out))}"
    with FolderLock(options.out, log, resume):
        return _run(options, log)


def memory_needs(options: RunOptions) -> str:
    """One line: each framework's estimated memory for one of its runs (``cnn_common.memory``,
    the images it loads included); a run that would not fit in the memory available now is
    refused (``UserError``) before anything starts. The runs train one at a time."""
    sizes = split_sizes(
        options.dataset, options.train_spec, options.data_dir, options.subset, options.eval_subset
    )
    images, threads = sum(sizes), options.threads or thread_setting()
    parts, free = [], available_memory()  # read once for every framework
    for name in options.frameworks:
        info = registry.get(name)
        need = framework_estimate(info, options.model_spec, options.train_spec, images, threads)
        processes = options.devices if info.data_parallel else 1  # DDP: one process a device
        what, described = f"a {name} run", need.describe()
        check_fits(need.total * processes, what, described, free, options.train_spec.dtype)
        parts.append(f"{name} {human(need.total * processes)}")
    room = f"; {human(free)} available" if free is not None else ""
    return f"memory (estimate, a run at a time): {', '.join(parts)}{room}"


def record_wall(out: Path, started: float, seconds: float, resumed: bool) -> None:
    """Add this session (its start, Unix time, and wall seconds) to ``OUT/wall.json``; a run
    that is not resumed starts the list afresh."""
    path = out / WALL_FILE
    sessions: list[dict[str, Any]] = []
    if resumed and path.is_file():
        try:
            sessions = list(json.loads(path.read_text())["sessions"])
        except (ValueError, KeyError, TypeError):
            sessions = []  # a damaged record: this session's time is still worth keeping
    sessions.append(
        {"started": round(started, 3), "seconds": round(seconds, 3), "resumed": resumed}
    )
    atomic_write_json(path, {"sessions": sessions})


def _run(options: RunOptions, log: Callable[[str], None]) -> int:
    # rounds of seeds may grow a folder's seeds: the rest of its configuration must match
    growing = ("seeds", "sequential") if options.first_seeds else ()
    check_out(
        options.out,
        options.config(),
        resume=options.resume,
        overwrite=options.overwrite,
        may_change=growing,
    )
    started, clock = time.time(), time.monotonic()  # the report's total wall time
    executor = make_executor(
        options.executor, options.threads, options.in_process, options.ray_address
    )
    seeds, rounds = options.seed_list(), options.rounds
    count, worst = rounds[0], 0
    training = {
        fw for seed in seeds[:count] for fw in options.frameworks if not _kept(options, fw, seed)
    } | (set(options.frameworks) if len(rounds) > 1 else set())
    with warm_workers(executor, options, training) as pool:
        done_before = 0
        while True:
            worst = max(worst, _train(options, executor, seeds[done_before:count]))
            if worst or count >= rounds[-1]:
                break
            following = next_round(options.out, rounds, options.margin, count, log)
            if following is None:
                break
            done_before, count = count, following
        if len(options.frameworks) > 1:
            log("cross-evaluating the trained weights")
            run_crosseval(
                options.out,
                list(options.frameworks),
                options.seed_list()[0],
                crosseval_fields(options),
                options.in_process,
                options.threads,
                log,
                pool,
            )
    record_wall(options.out, started, time.monotonic() - clock, options.resume)
    for line in write_outputs(options.out):
        log(line)
    return worst


def _label(options: RunOptions, framework: str, seed: int) -> str:
    return framework if options.seeds == 1 else f"{framework} seed {seed}"


def _kept(options: RunOptions, framework: str, seed: int) -> bool:
    """A finished run that --resume keeps."""
    return options.resume and completed(run_dir(options.out, framework, seed))


def _train(options: RunOptions, executor: LocalExecutor | RayExecutor, seeds: list[int]) -> int:
    """Train every framework on ``seeds`` (what --resume finds finished is kept; another
    folder of these seeds starts afresh) under one live display; the worst exit status:
    0, 2 for a user error (e.g. a framework not installed), 1 for a crash."""
    runs = [(fw, seed) for seed in seeds for fw in options.frameworks]
    labels = [_label(options, fw, seed) for fw, seed in runs]
    display = RunDisplay(labels, options.progress)
    worst = 0

    def done(label: str, status: int) -> None:
        nonlocal worst
        if status != 0:
            failure = read_failure(jobs[label].path, status)
            display.note(label, f"failed: {failure['error'].splitlines()[0][:60]}")
            worst = max(worst, EXIT_USER_ERROR if failure["kind"] == "user" else 1)
        display.finish(label)

    jobs: dict[str, TrainJob] = {}
    try:
        for (fw, seed), label in zip(runs, labels, strict=True):
            path = run_dir(options.out, fw, seed)
            if _kept(options, fw, seed):
                display.note(label, "kept (finished earlier)")
                display.finish(label)
                continue
            if not options.resume and path.exists():
                shutil.rmtree(path)
            try:
                registry.check_installed(fw)
            except FrameworkMissingError as exc:
                write_failure(path, "user", str(exc))
                display.note(label, "not installed")
                worst = max(worst, EXIT_USER_ERROR)
                continue
            jobs[label] = train_job(options, fw, seed)
        executor.run([(label, job, None) for label, job in jobs.items()], display.event, done)
    finally:
        display.close()
    return worst


@contextlib.contextmanager
def warm_workers(
    executor: LocalExecutor | RayExecutor, options: RunOptions, training: set[str]
) -> Iterator[WorkerPool | None]:
    """With warm workers (the default) and the local executor in worker processes: one for
    every framework that trains or is cross-evaluated, all started (and their imports done)
    before the first run trains; otherwise None. Not under data parallelism: DDP starts its
    other processes by running the worker's command line again, which must be the one-job
    form."""
    local = isinstance(executor, LocalExecutor) and not options.in_process
    if not (local and options.warm_workers) or options.devices > 1:
        yield None
        return
    wanted = training if len(options.frameworks) < 2 else set(options.frameworks)
    installed = [name for name in options.frameworks if name in wanted and _installed(name)]
    with WorkerPool(options.out, options.threads) as pool:
        pool.start(installed)
        executor.pool = pool
        try:
            yield pool
        finally:
            executor.pool = None


def _installed(framework: str) -> bool:
    try:
        registry.check_installed(framework)
    except FrameworkMissingError:
        return False
    return True


def crosseval_fields(options: RunOptions) -> dict[str, Any]:
    """What every cross-evaluation job of a run shares: its specs and test data."""
    return {
        "model_spec": spec_to_dict(options.model_spec)["model"],
        "train_spec": spec_to_dict(options.model_spec, options.train_spec)["train"],
        "dataset": options.dataset,
        "data_dir": options.data_dir,
        "eval_subset": options.eval_subset,
    }


def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``cnn-compare run``."""
    add_arguments(parser)
    parser.add_argument(
        "--seeds",
        type=seeds_argument,
        default="1",  # argparse passes a string default through seeds_argument
        metavar="N|auto:MAX",
        help="train each framework on N seeds; auto:MAX: in rounds from 3 seeds until every "
        "pair of frameworks is a real difference or equivalent, MAX seeds at most",
    )
    margin_argument(parser)
    parser.add_argument(
        "--init",
        choices=["shared", "native"],
        default="shared",
        help="shared: identical starting weights everywhere; native: each framework's own",
    )
    parser.add_argument(
        "--native",
        type=native_argument,
        default=(),
        metavar="TOPICS|all",
        help="run these topics with each framework's own conventions instead of the spec's "
        f"(comma-separated): {', '.join(NATIVE_TOPICS)}; all: every one",
    )
    init_from_argument(parser)
    add_device_arguments(
        parser,
        "processes (CPU) or GPUs each run of lightning and pytorch trains on, with "
        "Lightning's DDP; the other frameworks train on one",
    )
    folder_arguments(
        parser,
        Path("runs/compare"),
        "results folder",
        "replace results already in --out",
        "finish the run in --out with its saved configuration; finished runs are kept",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the frameworks in this process instead of one process each",
    )
    parser.add_argument(
        "--warm-workers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one worker per framework, started and imported before anything is timed, kept "
        "for every seed and the cross-evaluation; --no-warm-workers: a fresh worker per job",
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads per framework (default: all cores)"
    )
    executor_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no live progress display")


# What --resume takes from the saved configuration (the options that decide the results).
RESUMED = (
    "frameworks",
    "dataset",
    "init",
    "native",
    "init_from",
    "device",
    "subset",
    "eval_subset",
    "seeds",
    "devices",
)


def _saved_config(args: argparse.Namespace) -> dict[str, Any]:
    """With ``--resume``, the configuration saved in ``--out``; flags that decide the results
    must not be given again (only how to run — threads, progress — may change, the margins,
    and ``--seeds auto:MAX``, which continues the folder's seeds in rounds)."""
    path = args.out / CONFIG_FILE
    if not args.resume or not path.is_file():
        return {}
    saved = read_config(path)
    fresh = argparse.ArgumentParser()
    configure(fresh)
    defaults = fresh.parse_args([])
    given = [
        name
        for name in (*RESUMED, "spec", "overrides", "epochs", "batch_size", "seed", "dtype")
        if getattr(args, name) != getattr(defaults, name)
        and not (name == "seeds" and args.seeds.auto)  # rounds may grow the seeds
    ]
    if given:
        flags = {"overrides": "--set"}
        raise UserError(
            f"--resume takes its configuration from {path}; do not give "
            + ", ".join(flags.get(name, f"--{name.replace('_', '-')}") for name in given),
            f"run `{PROG} run --resume --out {args.out}` alone, or start a new --out",
        )
    return saved


def init_from_path(run: str, init: str, out: Path, model: ModelSpec, train: TrainSpec) -> str:
    """``--init-from``'s weight file as an absolute path (the workers and a later --resume
    read it from anywhere), once the run is found to fit the spec (``UserError`` before the
    data is read); refused with ``--init native`` and from inside ``--out``, whose runs this
    command replaces."""
    if init == "native":
        raise UserError(
            "--init-from gives every framework the same starting weights; --init native "
            "cannot go with it",
            "drop --init native (the layers not in the run start from the shared weights)",
        )
    path = Path(transfer_weights(model, train, run).plan.source)
    if path.is_relative_to(out.resolve()):
        raise UserError(
            f"--init-from {run} is inside --out {out}, whose runs this command replaces",
            "copy the run elsewhere, or choose another --out",
        )
    return str(path)


def main(args: argparse.Namespace) -> int:
    """``cnn-compare run``: check the options, train, report; 2 when a framework failed."""
    names = registry.parse_frameworks(args.frameworks)
    model, train = specs_from_args(args)
    saved = _saved_config(args)
    if saved:
        names = saved["frameworks"]
        model, train = spec_from_dict({"model": saved["model"], "train": saved["train"]})
        for name in RESUMED[1:]:  # an older folder may lack a newer option: its default
            if name != "seeds":
                setattr(args, name, saved.get(name, getattr(args, name)))
    seeds, first = seed_plan(args, saved)
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}", "use --seeds 1 or more")
    if first and len(names) < 2:
        raise UserError(
            "--seeds auto:MAX runs seeds until every pair of frameworks is resolved; "
            f"{', '.join(names)} alone makes no pair",
            "give two or more --frameworks, or a number of seeds (--seeds 5)",
        )
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}", "use --threads 1+")
    if args.devices < 1:
        raise UserError(f"--devices must be at least 1, got {args.devices}", "use --devices 1+")
    make_executor(args.executor, args.threads, args.in_process, args.ray_address)  # checks
    if args.init_from and not saved:
        args.init_from = init_from_path(args.init_from, args.init, args.out, model, train)
    fields = sweep_fields(args, names, model, train)
    fields.update(seeds=seeds, first_seeds=first, margin=margin_from(args, saved))
    options = from_args(RunOptions, args, **fields)
    status = run(options)
    if status == 2:
        print(f"{PROG}: error: some frameworks could not run; see the report", file=sys.stderr)
    return status
