"""``cnn-compare ablate``: which of a framework's defaults causes a difference, and how much.

The baseline arm neutralises every difference (what ``cnn-compare run --init shared`` runs:
the shared initial weights, the shared batch order, the spec's Adam epsilon, the spec's
padding, all cores). Each factor's arm turns one thing back to the framework's own default,
on the same seeds, so each arm pairs with the baseline seed by seed:

- ``init``: the framework's own initialisers;
- ``epsilon``: its own Adam epsilon and where it adds it;
- ``order``: its own shuffling (``train(native={"order"})``);
- ``padding``: its own 'same' placement (``train(native={"padding"})``);
- its own conventions (``FrameworkInfo.conventions``, ``train(native={topic})``):
  ``epsilon`` (Adam's), ``bn_momentum``, ``bn_epsilon``, ``bn_variance``, ``frozen_bn``,
  ``weight_decay`` and ``schedule``;
- two noise floors that change no default at all: ``threads`` (one thread instead of all
  cores: only the order of summation changes) and ``ulp`` (the last bit of one initial weight
  flipped).

A factor a framework has no default of its own for (NumPy has no Adam epsilon of its own) is
reported as such, not run; so is one the spec gives nothing to change (batchnorm's conventions
in a model without batchnorm). ``--cumulative`` adds the stages of ``compare.ablate.cumulative``
for two frameworks: everything native, then one topic aligned at a time, the gap at each. The
runs of one framework share one worker process (one per thread
setting), so the framework is imported once. Layout under ``OUT``::

    OUT/ablation/config.json                         what was asked (--resume reads it back)
    OUT/ablation/runs/<framework>/<arm>-seed<S>/     one training run
    OUT/ablation/batches/<framework>-<threads>t/     a worker's events and log
    OUT/ablation.json                                the effects (compare.ablate.effects)
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnn_common.batches import steps_per_epoch
from cnn_common.cli import add_data_arguments, add_spec_arguments, specs_from_args
from cnn_common.errors import UserError
from cnn_common.files import atomic_write_json
from cnn_common.gpu import gpu_here
from cnn_common.machine import matmul_gflops, thread_setting
from cnn_common.spec import TrainSpec, flops, spec_to_dict
from compare.ablate.arms import FACTORS, Arm, check_factors, plan_arms, plan_stages
from compare.ablate.cumulative import cumulative_lines, summarize_cumulative
from compare.ablate.effects import summarize
from compare.engine import registry
from compare.engine.executors import make_executor
from compare.engine.jobs import BatchJob, Job
from compare.engine.launch import read_failure
from compare.engine.layout import (
    ABLATION_DIR,
    ABLATION_FILE,
    BATCHES_DIR,
    CONFIG_FILE,
    RUNS_DIR,
)
from compare.engine.lock import FolderLock
from compare.engine.options import (
    SweepOptions,
    at_least,
    check_out,
    executor_arguments,
    folder_arguments,
    frameworks_argument,
    from_args,
    read_config,
    sweep_fields,
)
from compare.engine.progress import RunDisplay
from compare.report.collect import completed
from compare.report.outputs import write_outputs
from compare.run.job import TrainJob
from compare.stats.margins import Margins, margin_argument, margin_from

# Assumed share of the machine's matrix-multiply speed a framework reaches when training this
# small CNN, for the estimate printed before the runs start (bench measures the real share).
ESTIMATE_EFFICIENCY = 0.3
SECONDS_PER_RUN = 1.5  # building, evaluating and writing a run, beyond its training FLOPs
SECONDS_PER_PROCESS = 5.0  # starting a worker and importing its framework


@dataclass(frozen=True, kw_only=True)
class AblateOptions(SweepOptions):
    """Everything ``cnn-compare ablate`` was asked to do."""

    factors: tuple[str, ...] = FACTORS
    seeds: int = 5
    out: Path = Path("runs/ablate")
    subset: int | None = 20000
    margin: Margins = Margins()  # how close to the baseline counts as equivalent
    cumulative: bool = False  # also the stages from everything native to the baseline
    # executor: local runs a worker per framework and thread count; ray a task per run

    def config(self) -> dict[str, Any]:
        """What decides the results (``--resume`` reads it back)."""
        return {
            "frameworks": list(self.frameworks),
            "factors": list(self.factors),
            "dataset": self.dataset,
            "seeds": self.seeds,
            "subset": self.subset,
            "eval_subset": self.eval_subset,
            "threads": self.threads or thread_setting(),
            "margin": self.margin.to_dict(),
            "cumulative": self.cumulative,
            **spec_to_dict(self.model_spec, self.train_spec),
        }

    @property
    def folder(self) -> Path:
        return self.out / ABLATION_DIR


def run_folder(options: AblateOptions, arm: Arm, seed: int) -> Path:
    return options.folder / RUNS_DIR / arm.framework / f"{arm.factor}-seed{seed}"


def arm_job(options: AblateOptions, arm: Arm, seed: int) -> TrainJob:
    train = dataclasses.replace(options.train_spec, seed=seed)
    return options.job(
        TrainJob,
        arm.framework,
        run_folder(options, arm, seed),
        train_spec=train,
        seed=seed,
        subset=options.subset,
        eval_subset=options.eval_subset,
        init=arm.init,
        native=list(arm.native),
        feature_maps=False,
    )


def estimate_seconds(options: AblateOptions, runs: int, processes: int, n_train: int) -> float:
    """A rough wall time for ``runs`` runs, from this machine's matrix-multiply speed."""
    train = options.train_spec
    n_val = 0 if options.eval_subset is None else options.eval_subset
    per_run = flops(options.model_spec) * (3 * n_train * train.epochs + 15000 + n_val)
    rate = matmul_gflops(seconds=0.3) * 1e9 * ESTIMATE_EFFICIENCY
    return runs * (per_run / rate + SECONDS_PER_RUN) + processes * SECONDS_PER_PROCESS


def run_ablation(options: AblateOptions, log: Callable[[str], None] = print) -> int:
    """Run every arm that is not done yet, then write and print the effects.

    Returns 0 when every run succeeded, 2 when one failed for a user error, 1 on a crash.
    Holds ``OUT/.lock`` (``compare.engine.lock``), as ``cnn-compare run`` does.
    """
    out = shlex.quote(str(options.out))
    resume = f"the same `cnn-compare ablate ... --out {out}` with --resume added"
    with FolderLock(options.out, log, resume):
        return _run_ablation(options, log)


def _run_ablation(options: AblateOptions, log: Callable[[str], None]) -> int:
    for name in options.frameworks:
        registry.check_installed(name)
    if options.overwrite and options.folder.exists():
        shutil.rmtree(options.folder)
    check_out(
        options.folder,
        options.config(),
        resume=options.resume,
        overwrite=options.overwrite,
        different="an ablation of another configuration",
        existing="ablation runs",
    )
    model, train = options.model_spec, options.train_spec
    gpu = gpu_here()  # ablation runs train on the device each framework finds (auto)
    threads = options.threads or thread_setting()
    factor_arms = plan_arms(options.frameworks, options.factors, model, train, threads, gpu)
    stages = (
        plan_stages(options.frameworks, options.factors, model, train, factor_arms, gpu)
        if options.cumulative
        else []
    )
    arms = factor_arms + stages
    seeds = options.seed_list()
    todo = [
        (arm, seed)
        for arm in arms
        if arm.runs
        for seed in seeds
        if not (options.resume and completed(run_folder(options, arm, seed)))
    ]
    n_train = options.subset or 55000
    steps = steps_per_epoch(n_train, options.train_spec.batch_size) * options.train_spec.epochs
    groups: dict[tuple[str, int | None], list[TrainJob]] = {}
    for arm, seed in todo:
        groups.setdefault((arm.framework, arm.threads), []).append(arm_job(options, arm, seed))
    total = sum(len(seeds) for arm in arms if arm.runs)
    minutes = estimate_seconds(options, len(todo), len(groups), n_train) / 60
    log(
        f"ablate: {len(todo)} training runs to do ({total} in all: {len(options.frameworks)} "
        f"framework(s), {len(options.factors)} factor(s) and the baseline, {len(seeds)} "
        f"seed(s); {options.train_spec.epochs} epoch(s) on {n_train:,} images); "
        f"estimate about {minutes:.0f} min"
    )
    for arm in arms:
        if not arm.runs:
            log(f"  {arm.framework} {arm.factor}: not run ({arm.why})")
        elif arm in stages:
            what = ", ".join(arm.native + (("init",) if arm.init == "native" else ()))
            log(f"  {arm.framework} {arm.factor}: native {what or 'nothing'}")
    labels = {key: f"{key[0]}" + (f" ({key[1]} thread)" if key[1] else "") for key in groups}
    display = RunDisplay(
        list(labels.values()),
        options.progress,
        totals={labels[key]: steps * len(jobs) for key, jobs in groups.items()},
    )
    worst = 0
    # Locally a batch per framework and thread count shares one worker (imports once); on Ray
    # every run is a task of its own, which the cluster places.
    work: list[tuple[str, Job, int | None]] = []
    for key, jobs in groups.items():
        framework, threads = key
        if options.executor == "ray":
            work += [(labels[key], job, threads) for job in jobs]
            continue
        suffix = f"{threads or options.threads or thread_setting()}t"
        out = options.folder / BATCHES_DIR / f"{framework}-{suffix}"
        batch = options.job(BatchJob, framework, out, jobs=jobs)
        work.append((labels[key], batch, threads))

    def done(label: str, status: int) -> None:
        nonlocal worst
        if status != 0:
            display.note(label, f"a worker failed (status {status}); see its log.txt")
            worst = max(worst, 1)

    executor = make_executor(options.executor, options.threads, False, options.ray_address)
    try:
        executor.run(work, display.event, done)
    finally:
        display.close()
    for jobs in groups.values():
        for job in jobs:
            if not completed(job.path):
                failure = read_failure(job.path, 1)
                worst = max(worst, 2 if failure["kind"] == "user" else 1)
    summary = summarize(options.folder, factor_arms, seeds, options.margin)
    if stages:
        summary["cumulative"] = summarize_cumulative(
            options.folder, stages, options.factors, seeds, options.margin
        )
    atomic_write_json(options.out / ABLATION_FILE, summary)
    for line in summary_lines(summary):
        log(line)
    log(f"wrote {options.out / ABLATION_FILE}; {write_outputs(options.out)[-1]}")
    return worst


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The effects table as text lines, one per framework and factor."""
    width = max(len(name) for name in FACTORS)
    lines = [
        f"{'framework':<12} {'factor':<{width}} {'accuracy effect (points)':<28} "
        f"{'loss effect':<26} verdict"
    ]
    for row in summary["effects"]:
        head = f"{row['framework']:<12} {row['factor']:<{width}} "
        if not row["runs"]:
            lines.append(head + row["why"])
            continue
        acc, loss = row["accuracy"], row["loss"]
        points = (
            f"{100 * acc['difference']:+.3f} [{100 * acc['low']:+.3f}, {100 * acc['high']:+.3f}]"
        )
        losses = f"{loss['difference']:+.4f} [{loss['low']:+.4f}, {loss['high']:+.4f}]"
        lines.append(f"{head}{points:<28} {losses:<26} {row['verdict']}")
    if "cumulative" in summary:
        lines += cumulative_lines(summary["cumulative"])
    return lines


DESCRIPTION = (
    "Train a baseline with every difference neutralised, then one arm per factor that turns "
    "one default back to each framework's own, on the same seeds; report each effect with its "
    "95% interval against two noise floors (threads, ulp)."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``cnn-compare ablate``."""
    frameworks_argument(parser)
    parser.add_argument(
        "--factors",
        default=",".join(FACTORS),
        help=f"comma-separated factors: {', '.join(FACTORS[:-2])}, and the noise floors "
        "threads and ulp",
    )
    parser.add_argument(
        "--cumulative",
        action="store_true",
        help="two frameworks: also run them with every factor native, then align one factor "
        "at a time in the order of --factors, and show the gap between them at each stage",
    )
    add_spec_arguments(parser, TrainSpec(epochs=1))
    add_data_arguments(parser, default_subset=20000)
    parser.add_argument("--seeds", type=int, default=5, help="seeds per arm (at least 3)")
    margin_argument(parser)
    folder_arguments(
        parser,
        Path("runs/ablate"),
        "results folder",
        "replace an ablation already in --out",
        "finish the ablation in --out with its saved configuration; finished runs are kept",
    )
    parser.add_argument("--threads", type=int, help="CPU threads per run (default: all cores)")
    executor_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no live progress display")


def main(args: argparse.Namespace) -> int:
    """``cnn-compare ablate``: check the options, run the arms, write the effects."""
    names = registry.parse_frameworks(args.frameworks)
    model, train = specs_from_args(args)
    if args.seeds < 3:
        raise UserError(
            f"--seeds must be at least 3 for an ablation, got {args.seeds}",
            "use --seeds 3 or more: fewer give intervals too wide to say anything",
        )
    at_least("--threads", args.threads)
    if args.epochs is None:
        train = dataclasses.replace(train, epochs=1)
    factors = check_factors(args.factors.split(","))
    if args.cumulative and len(names) != 2:
        raise UserError(
            f"--cumulative compares two frameworks, got {len(names)}: {', '.join(names)}",
            "give two with --frameworks, for example --frameworks keras,pytorch",
        )
    fields = sweep_fields(args, names, model, train)
    saved_path = args.out / ABLATION_DIR / CONFIG_FILE
    saved = read_config(saved_path) if args.resume and saved_path.is_file() else None
    fields["margin"] = margin_from(args, saved)  # on --resume, the folder's unless given
    return run_ablation(from_args(AblateOptions, args, **fields, factors=factors))
