"""Training with a plain PyTorch loop: the ten lines a PyTorch user writes, and a checkpoint
per epoch.

This loop is also the yardstick for Lightning: both feed ``CNN`` the same tensors
(``pytorch_cnn.batching.BatchSource``) with the same optimiser (``make_optimizer``), so a
Lightning run's per-step losses equal this loop's bit for bit, and what Lightning costs on top
is its own time.

A checkpoint (``checkpoints/epoch-0003.pt``, ``torch.save``) holds the network's and the
optimiser's state dicts and the recorder's state; ``resume=True`` continues from the newest
readable one. The learning rate of each update is set from its index in the run
(``set_learning_rate``), so a resumed run continues the schedule where it stopped.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnn_common.batches import epoch_batches, shard_batches, steps_per_epoch
from cnn_common.data import Data
from cnn_common.errors import FrameworkMissingError, UserError
from cnn_common.files import atomic_write_bytes, check_resumable, checkpoint_path
from cnn_common.gpu import set_torch
from cnn_common.phases import Phases, StepClock, step_batches
from cnn_common.recorder import RunRecorder
from cnn_common.results import RunResult, package_versions
from cnn_common.spec import ModelSpec, TrainSpec, spec_to_dict
from cnn_common.trainer import TrainCall, contract_train
from cnn_common.weights import Weights
from pytorch_cnn.batching import BatchSource, dropout_seed, native_order_batches
from pytorch_cnn.framework import FRAMEWORK
from pytorch_cnn.model import build, evaluate, get_weights, set_weights
from pytorch_cnn.network import CNN, kernel_builds
from pytorch_cnn.optim import make_optimizer, set_learning_rate

SUFFIX = ".pt"
DEVICES = ("auto", "cpu", "gpu")
VERSIONED = ("torch", "numpy")


def torch_device(device: str) -> torch.device:
    """The torch device for the contract's ``device`` (auto | cpu | gpu)."""
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}", f"use one of: {', '.join(DEVICES)}")
    if device == "gpu" and not torch.cuda.is_available():
        raise UserError(
            "device 'gpu' was asked for, but PyTorch sees no GPU",
            "use --device cpu (or auto), or install a CUDA build of PyTorch",
        )
    return torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")


def describe_device(device: torch.device) -> str:
    """``cpu (N threads)`` or ``cuda:0 (NVIDIA ...)``: what the run record calls the device."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


@dataclass
class Replicas:
    """This process's place in a data-parallel run: its rank among ``world`` processes, and
    Lightning Fabric, which launched them and wraps the network in DDP (None alone)."""

    rank: int = 0
    world: int = 1
    fabric: Any = None

    def backward(self, loss: torch.Tensor) -> None:
        if self.fabric is None:
            loss.backward()
        else:
            self.fabric.backward(loss)  # DDP all-reduces the gradients


def data_parallel(devices: int, where: torch.device) -> Replicas:
    """One process (``devices=1``), or ``devices`` processes with Lightning Fabric's DDP:
    this call starts the others, each running this same program."""
    if devices == 1:
        return Replicas()
    try:
        from lightning.fabric import Fabric
    except ImportError:
        raise FrameworkMissingError(
            f"training the plain PyTorch loop on {devices} devices uses Lightning Fabric's "
            "DDP, and lightning is not installed",
            'pip install -e ".[lightning]", or train on one device',
        ) from None
    accelerator = "cuda" if where.type == "cuda" else "cpu"
    fabric = Fabric(accelerator=accelerator, devices=devices, strategy="ddp")
    fabric.launch()
    return Replicas(fabric.global_rank, fabric.world_size, fabric)


def run_epoch(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    source: BatchSource,
    train_spec: TrainSpec,
    epoch: int,
    recorder: RunRecorder,
    device: torch.device,
    native_order: bool = False,
    replicas: Replicas | None = None,
) -> None:
    """One epoch (0-based) of the plain loop over the shared batch order (or PyTorch's own
    shuffling with ``native_order``); under data parallelism, this process's share, whose
    length is the steps an epoch of the learning-rate schedule counts."""
    replicas = replicas or Replicas()
    if any(isinstance(module, torch.nn.Dropout) for module in net.modules()):
        torch.manual_seed(dropout_seed(train_spec.seed, epoch))
    net.train()
    order = native_order_batches if native_order else epoch_batches
    batches = list(enumerate(order(len(source), train_spec.batch_size, train_spec.seed, epoch)))
    share = shard_batches(batches, replicas.rank, replicas.world)
    # the step in the whole epoch's list seeds the batch's augmentation on every rank
    for update, (step, idx) in enumerate(share, start=epoch * len(share)):
        xb, yb = source.batch(epoch, step, idx)  # (B, C, H, W), (B,)
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad()
        logits = net(xb)
        loss = F.cross_entropy(logits, yb)
        replicas.backward(loss)
        set_learning_rate(optimizer, train_spec, update, len(share))
        optimizer.step()
        correct = (logits.argmax(dim=1) == yb).sum()
        # One device-to-host copy a step for the recorder.
        loss_value, correct_count = torch.stack([loss.detach(), correct.to(loss.dtype)]).tolist()
        recorder.step(loss_value, int(correct_count), len(idx))


def save_checkpoint(
    path: Path, net: CNN, optimizer: torch.optim.Optimizer, recorder: RunRecorder
) -> None:
    """Network, optimiser and recorder state in one ``torch.save`` file, written atomically."""
    buffer = io.BytesIO()
    state = {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "recorder": recorder.state(),
    }
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: Path, net: CNN, optimizer: torch.optim.Optimizer, recorder: RunRecorder
) -> None:
    """Restore from ``path``; a checkpoint of another spec raises ``UserError``."""
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    current = spec_to_dict(net.spec, recorder.train_spec)
    check_resumable(state["recorder"]["spec"], current, path.parent)
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    recorder.restore(state["recorder"])


@contract_train(FRAMEWORK)
def train(run: TrainCall) -> RunResult:
    """Train ``CNN`` with a plain PyTorch loop and write the run record to ``out_dir``.

    ``init_weights`` None -> PyTorch's initialisers. ``native``: defaults handed back to
    PyTorch: ``order`` (``DataLoader(shuffle=True)``'s batches), ``padding`` (PyTorch's own
    'same' placement); ``optimizer`` changes nothing (the spec's torch-convention Adam is
    ``torch.optim.Adam``). ``name`` defaults to ``pytorch``. ``devices``: processes (CPU) or
    GPUs; more than one uses Lightning Fabric's DDP, each process taking its share of every
    epoch's shared batches (the record's step losses are the first process's shares).
    """
    spec, train_spec, data, devices = run.spec, run.train_spec, run.data, run.devices
    where = torch_device(run.device)
    if where.type == "cuda":
        set_torch(train_spec)  # the spec's TF32 and determinism, before cuBLAS starts
    replicas = data_parallel(devices, where)
    net = build(
        spec, train_spec.dtype, seed=train_spec.seed, native_padding="padding" in run.native
    )
    run.initialise(net, set_weights)
    net.to(where)
    optimizer = make_optimizer(net.canonical_parameters(), train_spec)
    steps = steps_per_epoch(len(data.x_train), train_spec.batch_size, replicas.world)
    recorder = run.new_recorder(steps)
    run.resume_checkpoint(SUFFIX, lambda path: load_checkpoint(path, net, optimizer, recorder))
    trained, stepped = net, optimizer  # what the loop calls: the DDP wrappers under Fabric
    if replicas.fabric is not None:
        trained, stepped = replicas.fabric.setup(net, optimizer)
    source = BatchSource(data.x_train, data.y_train, train_spec)
    recorder.start(get_weights(net))
    for epoch in range(recorder.epochs_done, train_spec.epochs):
        recorder.begin_epoch(epoch)
        run_epoch(
            trained,
            stepped,
            source,
            train_spec,
            epoch,
            recorder,
            where,
            "order" in run.native,
            replicas,
        )
        val_loss, val_acc, _ = evaluate(net, data.x_val, data.y_val)
        recorder.end_epoch(val_loss, val_acc)
        if not recorder.silent:  # one process writes the checkpoints of a data-parallel run
            save_checkpoint(
                checkpoint_path(run.out_dir, epoch + 1, SUFFIX), net, optimizer, recorder
            )
    return finish_run(recorder, net, data, where, VERSIONED, devices)


def finish_run(
    recorder: RunRecorder,
    model: torch.nn.Module,
    data: Data,
    where: torch.device,
    versioned: Iterable[str],
    devices: int,
) -> RunResult:
    """Evaluate ``model`` (a ``CNN``, or a ``LitCNN`` holding one) on the test set and write
    the record of a run PyTorch computed, the plain loop's or Lightning's: ``where`` it trained,
    the ``versioned`` distributions and, under data parallelism, its ``devices``."""
    test_loss, _, predictions = evaluate(model, data.x_test, data.y_test)
    return recorder.finish(
        backend="torch",
        device=describe_device(where),
        versions=package_versions(versioned),
        test_loss=test_loss,
        predictions=predictions,
        weights=get_weights(model),
        threads=torch.get_num_threads(),
        kernels=kernel_builds(),
        extra={"devices": devices} if devices > 1 else None,
    )


def phase_times(
    spec: ModelSpec, train_spec: TrainSpec, data: Data, init_weights: Weights, steps: int
) -> Phases:
    """``steps`` steps of the plain loop on the CPU from ``init_weights``, each timed by phase
    (``cnn_common.phases``): data (the batch's tensors), forward + loss, backward, optimiser
    (the learning rate, ``step`` and ``zero_grad``). PyTorch computes synchronously on the
    CPU, so a clock read between the calls sees each one's whole cost."""
    net = build(spec, train_spec.dtype, seed=train_spec.seed)
    set_weights(net, init_weights)
    optimizer = make_optimizer(net.canonical_parameters(), train_spec)
    source = BatchSource(data.x_train, data.y_train, train_spec)
    per_epoch = steps_per_epoch(len(source), train_spec.batch_size)
    net.train()
    clock = StepClock()
    for epoch, step, idx in step_batches(len(source), train_spec, steps):
        clock.start()
        xb, yb = source.batch(epoch, step, idx)  # (B, C, H, W), (B,)
        clock.mark("data")
        logits = net(xb)
        loss = F.cross_entropy(logits, yb)
        clock.mark("forward")
        loss.backward()
        clock.mark("backward")
        set_learning_rate(optimizer, train_spec, epoch * per_epoch + step, per_epoch)
        optimizer.step()
        optimizer.zero_grad()
        clock.mark("optimizer")
        clock.end_step()
    return clock.phases
