"""The trainer skeleton: what every framework's ``train`` does around its own loop, written once.

``contract_train(info)`` turns a framework's loop into the contract's ``train`` (docs/design.md):
the signature, the arguments' meaning and the checks are stated here once, and the loop receives
them as one ``TrainCall``, differing from the others only where its framework does::

    @contract_train(FRAMEWORK)
    def train(run: TrainCall) -> RunResult:     # its docstring: its devices, what native does
        model = build(run.spec, ...)                # the framework's own model
        run.initialise(model, set_weights)          # the shared weights when given, else its own
        recorder = run.new_recorder()
        run.resume_checkpoint(SUFFIX, lambda path: load_checkpoint(path, model, ...))
        recorder.start(...)                         # then the framework's loop, and
        return recorder.finish(...)
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from cnn_common.batches import steps_per_epoch
from cnn_common.conventions import native_specs
from cnn_common.data import Data
from cnn_common.errors import UserError
from cnn_common.events import EventCallback
from cnn_common.files import load_latest_checkpoint, remove_checkpoints
from cnn_common.framework import FrameworkInfo, check_native
from cnn_common.memory import check_training, human
from cnn_common.recorder import RunRecorder
from cnn_common.results import RunResult
from cnn_common.schedule import describe
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.transfer import TransferWeights
from cnn_common.weights import Weights

T = TypeVar("T")  # what a framework's checkpoint reader returns

# What every ``train`` means by the contract's arguments; each loop's docstring adds its own
# framework's words (its devices, what ``native`` changes) above it.
CONTRACT_ARGS = """
Args:
    spec: the architecture.
    train_spec: optimiser, epochs, batch size, seed, augmentation, dtype.
    data: the prepared dataset (images ``(N, H, W, C)`` in [0, 1], int64 labels, already split).
    out_dir: where run.json, weights.safetensors and checkpoints/ go.
    init_weights: canonical starting weights (``init="shared"``; ``init="transfer"`` when they
        are ``cnn_common.transfer.TransferWeights``); None -> the framework's own
        initialisers, from the run seed's ``init`` stream (``init="native"``).
    on_event: receives the events of ``cnn_common.events``.
    resume: continue from the newest readable checkpoint in ``out_dir``, if any.
    device: auto | cpu | gpu.
    progress: print a progress bar and a line per epoch.
    native: the topics (``cnn_common.conventions.TRAIN_CHOICES``) handed back to the
        framework's own defaults: the loop reads (and the record keeps) a spec with the
        framework's own conventions there; an unknown one raises ``ValueError``.
    name: the framework name the record carries (default: the declaration's).
    devices: processes or GPUs to train on, where the declaration says it can
        (``FrameworkInfo.data_parallel``); elsewhere more than one raises ``UserError``.
"""


class TrainingRun:
    """The checks and the shared bookkeeping of one call of a framework's ``train``: the
    arguments they need, checked (``TrainCall`` adds the rest of the call's).

    Args:
        info: the framework's declaration (the record's name, its package for messages, whether
            it trains on several devices).
        out_dir: the run's folder.
        init_weights: canonical starting weights (``init="shared"``, or ``"transfer"`` for
            ``TransferWeights``, whose source the record names), or None for the framework's
            own initialisers (``init="native"``).
        native: ``train``'s ``native`` argument; an unknown choice raises ``ValueError``.
        devices: processes or GPUs to train on; more than one for a framework whose declaration
            says it cannot (``data_parallel=False``) raises ``UserError``.
        name: the framework name the record carries (default: the declaration's).
    """

    def __init__(
        self,
        info: FrameworkInfo,
        out_dir: str | Path,
        init_weights: Weights | None,
        *,
        native: Iterable[str] = (),
        devices: int = 1,
        name: str | None = None,
    ) -> None:
        self.info = info
        self.native = check_native(native)
        if devices != 1 and not info.data_parallel:
            raise UserError(
                f"{info.package} trains in one process, got devices={devices}",
                "train it with --devices 1; lightning and pytorch train on several (DDP)",
            )
        self.devices = devices
        self.out_dir = Path(out_dir)
        self.init_weights = init_weights
        self.init = "native" if init_weights is None else "shared"
        self.init_from = ""  # init transfer: the weight file the loaded layers came from
        if isinstance(init_weights, TransferWeights):
            self.init, self.init_from = "transfer", init_weights.plan.source
        self.name = name or info.name

    def initialise(self, model: Any, set_weights: Callable[[Any, Weights], None]) -> None:
        """Load the shared starting weights into ``model`` when the run has them (else the
        model keeps the framework's own initialisation)."""
        if self.init_weights is not None:
            set_weights(model, self.init_weights)

    def recorder(
        self,
        spec: ModelSpec,
        train_spec: TrainSpec,
        data: Data,
        on_event: EventCallback | None,
        progress: bool,
        steps: int | None = None,
    ) -> RunRecorder:
        """The run's ``RunRecorder`` (``steps``: this process's steps per epoch, when it
        trains on a share of each epoch)."""
        return RunRecorder(
            self.name,
            spec,
            train_spec,
            data,
            self.out_dir,
            init=self.init,
            init_from=self.init_from,
            on_event=on_event,
            progress=progress,
            native=self.native,
            steps=steps,
        )

    def resume_or_start_clean(
        self, resume: bool, suffix: str, load: Callable[[Path], T]
    ) -> tuple[int, T] | None:
        """With ``resume``, ``(epochs_done, load(path))`` of the newest checkpoint ``load`` can
        read (a damaged one is skipped with a warning); otherwise, or when none is readable,
        None, with every checkpoint of an earlier run deleted so that none is resumed later."""
        found = load_latest_checkpoint(self.out_dir, suffix, load, self.warn) if resume else None
        if found is None:
            remove_checkpoints(self.out_dir)
        return found

    def warn(self, message: str) -> None:
        """Print ``package: message`` on stderr (a run goes on after a warning)."""
        print(f"{self.info.package}: {message}", file=sys.stderr, flush=True)


class TrainCall(TrainingRun):
    """A ``TrainingRun`` that holds every argument of the contract's ``train`` call, so that a
    framework's loop reads them from it (``run.spec``, ``run.data``, ``run.device``) and opens
    its recorder and checkpoint with only what is its own. ``contract_train`` builds it."""

    def __init__(
        self,
        info: FrameworkInfo,
        spec: ModelSpec,
        train_spec: TrainSpec,
        data: Data,
        out_dir: str | Path,
        init_weights: Weights | None,
        on_event: EventCallback | None,
        *,
        resume: bool,
        device: str,
        progress: bool,
        native: Iterable[str],
        name: str | None,
        devices: int,
    ) -> None:
        super().__init__(info, out_dir, init_weights, native=native, devices=devices, name=name)
        # A native topic runs as the framework's users write it: the spec the loop reads (and
        # the record keeps) has the framework's own values there.
        # (the steps per epoch convert a schedule's counts when its interval changes)
        steps = steps_per_epoch(len(data.x_train), train_spec.batch_size) if self.native else 1
        self.spec, self.train_spec = native_specs(
            info.conventions, self.native, spec, train_spec, steps
        )
        self.data = data
        self.on_event = on_event
        self.resume = resume
        self.device = device
        self.progress = progress

    def check_memory(self) -> None:
        """Refuse the run (``UserError``) when what training will allocate, estimated from the
        spec (``cnn_common.memory``), exceeds the memory available now: before anything is
        built. With ``progress``, show the estimate (and the weight decay and schedule, where
        the spec has them)."""
        need, free = check_training(self.info, self.spec, self.train_spec, self.devices)
        if self.progress:
            room = f"; {human(free)} available" if free is not None else ""
            print(f"{self.info.package}: memory (estimate) {need.describe()}{room}", flush=True)
            if words := describe(self.train_spec):  # what changes the optimiser's step
                print(f"{self.info.package}: {words}", flush=True)

    def new_recorder(self, steps: int | None = None) -> RunRecorder:
        """The call's ``RunRecorder`` (``steps``: this process's steps per epoch, when it trains
        on a share of each epoch)."""
        return self.recorder(
            self.spec, self.train_spec, self.data, self.on_event, self.progress, steps
        )

    def resume_checkpoint(self, suffix: str, load: Callable[[Path], T]) -> tuple[int, T] | None:
        """``resume_or_start_clean`` with the call's ``resume``."""
        return self.resume_or_start_clean(self.resume, suffix, load)


TrainLoop = Callable[[TrainCall], RunResult]
ContractTrain = Callable[..., RunResult]


def contract_train(
    info: FrameworkInfo | Callable[[], FrameworkInfo],
) -> Callable[[TrainLoop], ContractTrain]:
    """Turn a framework's loop ``train(run: TrainCall) -> RunResult`` into the contract's
    ``train``, with the contract's signature and the loop's name, module and docstring
    (followed by ``CONTRACT_ARGS``).

    ``info``: the framework's declaration, or a function that gives it at call time (a package
    whose record name follows its backend).
    """

    def wrap(loop: TrainLoop) -> ContractTrain:
        def train(
            spec: ModelSpec,
            train_spec: TrainSpec,
            data: Data,
            out_dir: str | Path,
            init_weights: Weights | None = None,
            on_event: EventCallback | None = None,
            *,
            resume: bool = False,
            device: str = "auto",
            progress: bool = True,
            native: Iterable[str] = (),
            name: str | None = None,
            devices: int = 1,
        ) -> RunResult:
            declared = info if isinstance(info, FrameworkInfo) else info()
            run = TrainCall(
                declared,
                spec,
                train_spec,
                data,
                out_dir,
                init_weights,
                on_event,
                resume=resume,
                device=device,
                progress=progress,
                native=native,
                name=name,
                devices=devices,
            )
            run.check_memory()
            return loop(run)

        train.__name__ = loop.__name__
        train.__qualname__ = loop.__qualname__
        train.__module__ = loop.__module__
        train.__doc__ = inspect.cleandoc(loop.__doc__ or "") + "\n" + CONTRACT_ARGS
        return train

    return wrap
