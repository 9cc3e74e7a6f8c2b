"""``cnn-compare run``: train each framework (and seed), one process each, keep every result.

Layout of the output folder::

    OUT/config.json                  what was asked (``--resume`` checks it matches)
    OUT/runs/<framework>-seed<S>/    one trainer's out_dir: run.json, weights.safetensors,
                                     feature_maps.npz, events.jsonl, log.txt, checkpoints/,
                                     failed.json when it failed
    OUT/results.json, history.csv, report.md, report.html, figures/*.png   (compare.report)

Each framework's results are on disk as soon as it finishes, so a crash, a kill or a framework
that is not installed loses nothing else; ``--resume`` runs only what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnn_common.errors import EXIT_USER_ERROR, FrameworkMissingError, UserError
from cnn_common.results import RESULT_FILE, RunResult
from cnn_common.spec import ModelSpec, TrainSpec, spec_to_dict
from cnn_common.weights import atomic_write_bytes
from compare import frameworks
from compare.worker import EVENTS_FILE, FAILED_FILE, make_job, run_job, write_failure

CONFIG_FILE = "config.json"
RUNS_DIR = "runs"


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
    resume: bool = False
    overwrite: bool = False
    in_process: bool = False
    threads: int | None = None
    progress: bool = True

    def config(self) -> dict[str, Any]:
        """The part of the options that decides the results (``--resume`` must match it)."""
        return {
            "dataset": self.dataset,
            "init": self.init,
            "device": self.device,
            "subset": self.subset,
            "seeds": self.seeds,
            **spec_to_dict(self.model_spec, self.train_spec),
        }


def run_dir(out: Path, framework: str, seed: int) -> Path:
    return out / RUNS_DIR / f"{framework}-seed{seed}"


def completed(path: Path) -> bool:
    """True when ``path`` holds a finished, successful run record."""
    try:
        return RunResult.from_json(path / RESULT_FILE).status == "ok"
    except (OSError, ValueError, TypeError, KeyError):
        return False


def _check_config(options: RunOptions) -> None:
    config_path = options.out / CONFIG_FILE
    if config_path.exists():
        if options.resume:
            old = json.loads(config_path.read_text())
            new = json.loads(json.dumps(options.config()))
            if old != new:
                changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise UserError(
                    f"{options.out} holds results of a different configuration "
                    f"(differs in: {', '.join(changed)})",
                    "resume with the same options, or choose another --out",
                )
        elif not options.overwrite and any((options.out / RUNS_DIR).glob("*/run.json")):
            raise UserError(
                f"{options.out} already holds results",
                "pass --resume to complete them, --overwrite to replace them, "
                "or choose another --out",
            )
    options.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(config_path, json.dumps(options.config(), indent=1).encode())


def child_env(threads: int | None) -> dict[str, str]:
    """Environment of a worker: thread counts set before any framework starts."""
    env = dict(os.environ)
    n = str(threads or os.cpu_count() or 1)
    for var in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
    ):
        env.setdefault(var, n)
    env.setdefault("TF_NUM_INTEROP_THREADS", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _die_with_parent() -> None:
    """In the child: receive SIGTERM when the parent dies, so a killed run leaves no orphan."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Progress:
    """One tqdm bar per (framework, seed), fed by the trainers' events."""

    def __init__(self, labels: list[str], enabled: bool) -> None:
        self.bars: dict[str, Any] = {}
        if not enabled:
            return
        from tqdm.auto import tqdm

        width = max(len(label) for label in labels)
        for i, label in enumerate(labels):
            self.bars[label] = tqdm(
                total=None,  # set by the trainer's "start" event
                desc=label.ljust(width),
                position=i,
                leave=True,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def event(self, label: str, event: dict[str, Any]) -> None:
        bar = self.bars.get(label)
        if bar is None:
            return
        kind = event.get("event")
        if kind == "start":
            bar.reset(total=event["epochs"] * event["steps_per_epoch"])
            bar.update(event.get("start_epoch", 0) * event["steps_per_epoch"])
        elif kind == "step":
            bar.update(1)
            bar.set_postfix(
                epoch=event["epoch"],
                loss=f"{event['loss']:.4f}",
                acc=f"{event['accuracy']:.4f}",
                refresh=False,
            )
        elif kind == "epoch":
            bar.set_postfix(
                epoch=event["epoch"],
                val_loss=f"{event['val_loss']:.4f}",
                val_acc=f"{event['val_accuracy']:.4f}",
            )
        elif kind == "end":
            bar.set_postfix(test_acc=f"{event['test_accuracy']:.4f}")

    def note(self, label: str, text: str) -> None:
        bar = self.bars.get(label)
        if bar is not None:
            bar.set_postfix_str(text)
            bar.refresh()

    def finish(self, label: str) -> None:
        """Close a finished run's bar now, so its elapsed time stops with its run."""
        bar = self.bars.pop(label, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        for label in list(self.bars):
            self.finish(label)


def launch(
    job: dict[str, Any],
    out: Path,
    env: dict[str, str],
    on_event: Callable[[dict[str, Any]], None] | None = None,
    poll_s: float = 0.2,
) -> int:
    """Run ``job`` in a worker process; feed its events to ``on_event``; return its status."""
    out.mkdir(parents=True, exist_ok=True)
    job_path = out / "job.json"
    atomic_write_bytes(job_path, json.dumps(job, indent=1).encode())
    events_path = out / EVENTS_FILE
    offset = events_path.stat().st_size if events_path.exists() else 0
    with open(out / "log.txt", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "compare.worker", str(job_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
        pending = b""
        while True:
            status = proc.poll()
            if on_event is not None and events_path.exists():
                with open(events_path, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                offset += len(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        on_event(json.loads(line))
            if status is not None:
                return status
            time.sleep(poll_s)


def train_job(options: RunOptions, framework: str, seed: int) -> dict[str, Any]:
    train = dataclasses.replace(options.train_spec, seed=seed)
    return make_job(
        "train",
        framework,
        options.model_spec,
        train,
        run_dir(options.out, framework, seed),
        dataset=options.dataset,
        data_dir=options.data_dir,
        subset=options.subset,
        init=options.init,
        device=options.device,
        resume=True,  # continue from checkpoints if any
    )


def run_checked(job: dict[str, Any], out: Path, env: dict[str, str], in_process: bool) -> None:
    """Run a parity or bench job to completion; a failure raises ``UserError`` naming the
    framework, why it failed and where its log is."""
    status = _run_in_process(job, out, None) if in_process else launch(job, out, env)
    if status != 0:
        failure = _read_failure(out, status)
        raise UserError(
            f"the {job['kind']} job of {job['framework']} failed: {failure['error']}",
            f"see {out / 'log.txt'}",
        )


def run(options: RunOptions, log: Callable[[str], None] = print) -> int:
    """Train every (framework, seed) that is not done yet; then write results and report.

    Returns 0 when every run succeeded, 2 when one failed for a user error (e.g. a framework
    not installed), 1 when one crashed.
    """
    from compare.report import write_outputs

    _check_config(options)
    seeds = [options.train_spec.seed + i for i in range(options.seeds)]
    jobs = [(fw, seed) for seed in seeds for fw in options.frameworks]
    labels = [f"{fw}" if options.seeds == 1 else f"{fw} seed {seed}" for fw, seed in jobs]
    progress = Progress(labels, options.progress)
    env = child_env(options.threads)
    worst = 0
    try:
        for (fw, seed), label in zip(jobs, labels, strict=True):
            path = run_dir(options.out, fw, seed)
            if options.resume and completed(path):
                progress.note(label, "kept (finished earlier)")
                continue
            if not options.resume and path.exists():
                shutil.rmtree(path)
            try:
                frameworks.check_installed(fw)
            except FrameworkMissingError as exc:
                write_failure(path, "user", str(exc))
                progress.note(label, "not installed")
                worst = max(worst, EXIT_USER_ERROR)
                continue
            job = train_job(options, fw, seed)
            on_event = lambda event, label=label: progress.event(label, event)  # noqa: E731
            if options.in_process:
                status = _run_in_process(job, path, on_event)
            else:
                status = launch(job, path, env, on_event)
            if status != 0:
                failure = _read_failure(path, status)
                progress.note(label, f"failed: {failure['error'].splitlines()[0][:60]}")
                worst = max(worst, EXIT_USER_ERROR if failure["kind"] == "user" else 1)
            progress.finish(label)
    finally:
        progress.close()
    summary = write_outputs(options.out)
    for line in summary:
        log(line)
    return worst


def _run_in_process(job: dict[str, Any], path: Path, on_event: Callable | None) -> int:
    path.mkdir(parents=True, exist_ok=True)
    (path / FAILED_FILE).unlink(missing_ok=True)
    try:
        run_job(job, on_event)
    except UserError as exc:
        write_failure(path, "user", str(exc))
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 - recorded; the other frameworks still run
        import traceback

        write_failure(path, "crash", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        return 1
    return 0


def _read_failure(path: Path, status: int) -> dict[str, str]:
    try:
        return json.loads((path / FAILED_FILE).read_text())
    except (OSError, ValueError):
        log_path = path / "log.txt"
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        failure = {
            "kind": "crash",
            "error": f"worker exited with status {status}",
            "traceback": tail,
        }
        write_failure(path, failure["kind"], failure["error"], failure["traceback"])
        return failure
