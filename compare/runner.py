"""``cnn-compare run``: train each framework (and seed), one process each, keep every result.

Each run lands in ``OUT/runs/<framework>-seed<S>/`` (``compare.layout``) as soon as it
finishes, so a crash, a kill or a framework that is not installed loses nothing else;
``--resume`` runs only what is missing, with the configuration saved in ``OUT/config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnn_common.errors import EXIT_USER_ERROR, FrameworkMissingError, UserError
from cnn_common.files import atomic_write_json
from cnn_common.spec import ModelSpec, TrainSpec, spec_to_dict
from compare import registry
from compare.collect import completed
from compare.crosseval import run_crosseval
from compare.executors import make_executor
from compare.jobs import TrainJob
from compare.launch import read_failure
from compare.layout import CONFIG_FILE, RESULT_FILE, RUNS_DIR, WALL_FILE, run_dir
from compare.lock import FolderLock
from compare.progress import RunDisplay
from compare.report import write_outputs
from compare.worker import write_failure


@dataclass(frozen=True)
class RunOptions:
    """Everything ``cnn-compare run`` was asked to do."""

    frameworks: tuple[str, ...]
    dataset: str
    model_spec: ModelSpec
    train_spec: TrainSpec
    seeds: int = 1
    init: str = "shared"
    device: str = "auto"
    out: Path = Path("runs/compare")
    data_dir: str | None = None
    subset: int | None = None
    eval_subset: int | None = None
    resume: bool = False
    overwrite: bool = False
    in_process: bool = False
    threads: int | None = None
    progress: bool = True
    devices: int = 1  # DDP processes (or GPUs) for the frameworks that can
    executor: str = "local"  # local | ray
    ray_address: str | None = None

    def config(self) -> dict[str, Any]:
        """The part of the options that decides the results (``--resume`` reads it back)."""
        return {
            "frameworks": list(self.frameworks),
            "dataset": self.dataset,
            "init": self.init,
            "device": self.device,
            "subset": self.subset,
            "eval_subset": self.eval_subset,
            "seeds": self.seeds,
            "devices": self.devices,
            **spec_to_dict(self.model_spec, self.train_spec),
        }

    def seed_list(self) -> list[int]:
        return [self.train_spec.seed + i for i in range(self.seeds)]


def read_config(path: Path) -> dict[str, Any]:
    """A results folder's saved configuration; a damaged one raises ``UserError``."""
    try:
        config = json.loads(path.read_text())
    except ValueError as exc:
        config = f"{type(exc).__name__}: {exc}"
    if not isinstance(config, dict):
        raise UserError(
            f"{path} is not a readable run configuration ({config})",
            f"choose another --out, or --overwrite to train every run in {path.parent} again",
        )
    return config


def _check_out(options: RunOptions) -> None:
    """Refuse to mix results of different configurations in one folder; save the config."""
    config_path = options.out / CONFIG_FILE
    if config_path.exists() and not options.overwrite:
        if options.resume:
            old = read_config(config_path)
            new = json.loads(json.dumps(options.config()))
            if old != new:
                changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise UserError(
                    f"{options.out} holds results of a different configuration "
                    f"(differs in: {', '.join(changed)})",
                    "resume with the same options, or choose another --out",
                )
        elif any((options.out / RUNS_DIR).glob(f"*/{RESULT_FILE}")):
            raise UserError(
                f"{options.out} already holds results",
                "pass --resume to complete them, --overwrite to replace them, "
                "or choose another --out",
            )
    options.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config_path, options.config())


def train_job(options: RunOptions, framework: str, seed: int) -> TrainJob:
    """The job that trains ``framework`` on ``seed`` into its run folder."""
    return TrainJob.create(
        model_spec=options.model_spec,
        train_spec=dataclasses.replace(options.train_spec, seed=seed),
        out=run_dir(options.out, framework, seed),
        framework=framework,
        seed=seed,
        dataset=options.dataset,
        data_dir=options.data_dir,
        subset=options.subset,
        eval_subset=options.eval_subset,
        init=options.init,
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
    resume = f"cnn-compare run --resume --out {shlex.quote(str(options.out))}"
    with FolderLock(options.out, log, resume):
        return _run(options, log)


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
    _check_out(options)
    started, clock = time.time(), time.monotonic()  # the report's total wall time
    executor = make_executor(
        options.executor, options.threads, options.in_process, options.ray_address
    )
    runs = [(fw, seed) for seed in options.seed_list() for fw in options.frameworks]
    labels = [fw if options.seeds == 1 else f"{fw} seed {seed}" for fw, seed in runs]
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
            if options.resume and completed(path):
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
        if len(options.frameworks) > 1:
            display.note(labels[-1], "cross-evaluating the trained weights")
            run_crosseval(
                options.out,
                list(options.frameworks),
                options.seed_list()[0],
                crosseval_fields(options),
                options.in_process,
                options.threads,
                log,
            )
    finally:
        display.close()
    record_wall(options.out, started, time.monotonic() - clock, options.resume)
    for line in write_outputs(options.out):
        log(line)
    return worst


def crosseval_fields(options: RunOptions) -> dict[str, Any]:
    """What every cross-evaluation job of a run shares: its specs and test data."""
    return {
        "model_spec": spec_to_dict(options.model_spec)["model"],
        "train_spec": spec_to_dict(options.model_spec, options.train_spec)["train"],
        "dataset": options.dataset,
        "data_dir": options.data_dir,
        "eval_subset": options.eval_subset,
    }
