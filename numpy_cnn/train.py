"""Training per the shared contract: cnn_common's batch order and augmentation, per-step loss,
per-epoch metrics, a checkpoint every epoch, resume, and the run record.

A checkpoint (``checkpoints/epoch-0003.npz``) holds everything the rest of the run depends on:
the weights, the optimiser state (Adam's ``m``, ``v``, ``t`` or SGD's velocity), the number of
finished epochs, the dropout generator's state and the history so far. Resuming from it
replays nothing and continues with exactly the numbers an uninterrupted run would have used,
so both end with bit-identical weights.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.batches import augment_batch, epoch_batches, steps_per_epoch
from cnn_common.data import Data
from cnn_common.errors import UserError
from cnn_common.results import (
    CHECKPOINT_DIR,
    RESULT_FILE,
    WEIGHTS_FILE,
    EpochRecord,
    EventCallback,
    RunResult,
    check_finite_loss,
    finish_result,
    package_versions,
)
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.weights import Weights, atomic_write_bytes, save_weights
from numpy_cnn import parallel
from numpy_cnn.model import CNN, build, evaluate, set_weights, train_step
from numpy_cnn.optim import Optimizer

FRAMEWORK = "numpy"


def dropout_rng(seed: int) -> np.random.Generator:
    """The generator of the dropout masks; its state is saved in every checkpoint."""
    return np.random.default_rng([seed, 0xD809])


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_path(out_dir: Path, epochs_done: int) -> Path:
    """``out_dir/checkpoints/epoch-NNNN.npz`` after ``epochs_done`` finished epochs."""
    return out_dir / CHECKPOINT_DIR / f"epoch-{epochs_done:04d}.npz"


def save_checkpoint(
    path: Path,
    model: CNN,
    optimizer: Optimizer,
    rng: np.random.Generator,
    epochs_done: int,
    history: list[EpochRecord],
    step_losses: list[float],
) -> None:
    """Write one checkpoint atomically (a run killed while writing keeps the previous one)."""
    meta = {
        "epochs_done": epochs_done,
        "adam_steps": optimizer.steps(),
        "rng_state": rng.bit_generator.state,
        "history": [vars(record) for record in history],
        "step_losses": step_losses,
        "dtype": model.dtype.name,
    }
    arrays = {f"weights/{k}": v for k, v in model.weights.items()}
    arrays.update({f"optimizer/{k}": v for k, v in optimizer.arrays().items()})
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: Path, model: CNN, optimizer: Optimizer, rng: np.random.Generator
) -> tuple[int, list[EpochRecord], list[float]]:
    """Restore model, optimiser and generator from ``path``; return
    ``(epochs_done, history, step_losses)``."""
    with np.load(path) as archive:
        meta = json.loads(str(archive["meta"]))
        weights = {
            k[len("weights/") :]: archive[k] for k in archive.files if k.startswith("weights/")
        }
        opt = {
            k[len("optimizer/") :]: archive[k] for k in archive.files if k.startswith("optimizer/")
        }
    try:
        set_weights(model, weights)
        optimizer.restore(opt, meta["adam_steps"])
    except (ValueError, KeyError) as exc:
        raise UserError(
            f"checkpoint {path} does not belong to this spec and optimiser ({exc})",
            "resume with the spec the run was started with, or use a new --out folder",
        ) from None
    rng.bit_generator.state = meta["rng_state"]
    history = [EpochRecord(**record) for record in meta["history"]]
    return int(meta["epochs_done"]), history, [float(v) for v in meta["step_losses"]]


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The checkpoint with the most finished epochs in ``out_dir``, or None."""
    found = sorted((out_dir / CHECKPOINT_DIR).glob("epoch-*.npz"))
    return found[-1] if found else None


# ----------------------------------------------------------------------------- training


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
) -> RunResult:
    """Train a model of ``spec`` on ``data`` as ``train_spec`` says and write the run record.

    ``data.x_train (N, H, W, C)`` floats in [0, 1] with int64 labels; batches come from
    ``epoch_batches`` (this function never shuffles on its own). ``init_weights`` (canonical
    layout) are used when given (``init="shared"``), else ``build``'s own (``init="native"``).
    Writes ``out_dir/run.json``, ``out_dir/weights.safetensors`` and one checkpoint per epoch;
    ``resume=True`` continues from the newest checkpoint in ``out_dir``. ``device`` must be
    "auto" or "cpu" (NumPy runs on the CPU); ``progress=False`` prints nothing.
    """
    if device not in ("auto", "cpu"):
        raise UserError(
            f"numpy_cnn runs on the CPU only, got device={device!r}",
            "use --device cpu (or auto), or the lightning/keras trainers for a GPU",
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = build(spec, train_spec.dtype)
    if init_weights is not None:
        set_weights(model, init_weights)
    optimizer = Optimizer(train_spec, model.weights)
    rng = dropout_rng(train_spec.seed)
    start_epoch, history, step_losses = 0, [], []
    if resume:
        path = latest_checkpoint(out_dir)
        if path is not None:
            start_epoch, history, step_losses = load_checkpoint(path, model, optimizer, rng)
    n_train = len(data.x_train)
    steps = steps_per_epoch(n_train, train_spec.batch_size)
    emit = on_event or (lambda event: None)
    emit(
        {
            "event": "start",
            "framework": FRAMEWORK,
            "epochs": train_spec.epochs,
            "steps_per_epoch": steps,
            "start_epoch": start_epoch,
        }
    )
    x_train = data.x_train.astype(model.dtype, copy=False)
    for epoch in range(start_epoch, train_spec.epochs):
        batches = epoch_batches(n_train, train_spec.batch_size, train_spec.seed, epoch)
        bar = _progress_bar(progress, steps, epoch, train_spec.epochs)
        losses, loss_sum, correct, seen = [], 0.0, 0, 0
        epoch_start = time.perf_counter()
        for step, index in enumerate(batches):
            xb = augment_batch(
                x_train[index], train_spec.augment_shift, train_spec.seed, epoch, step
            )
            loss, hits = train_step(model, optimizer, xb, data.y_train[index], rng)
            check_finite_loss(loss, epoch + 1, step + 1)
            losses.append(loss)
            loss_sum, correct, seen = loss_sum + loss, correct + hits, seen + len(index)
            running_loss, running_acc = loss_sum / len(losses), correct / seen
            emit(
                {
                    "event": "step",
                    "epoch": epoch + 1,
                    "step": step + 1,
                    "steps": steps,
                    "loss": running_loss,
                    "accuracy": running_acc,
                }
            )
            if bar is not None:
                bar.update(1)
                if step % 20 == 0 or step == steps - 1:
                    bar.set_postfix(loss=f"{running_loss:.4f}", acc=f"{running_acc:.4f}")
        epoch_time = time.perf_counter() - epoch_start
        if bar is not None:
            bar.close()
        val_loss, val_acc, _ = evaluate(model, data.x_val, data.y_val)
        record = EpochRecord(
            epoch + 1, float(np.mean(losses)), correct / seen, val_loss, val_acc, epoch_time
        )
        history.append(record)
        step_losses.extend(losses)
        save_checkpoint(
            checkpoint_path(out_dir, epoch + 1),
            model,
            optimizer,
            rng,
            epoch + 1,
            history,
            step_losses,
        )
        emit({"event": "epoch", **vars(record)})
        if progress:
            print(
                f"epoch {record.epoch}/{train_spec.epochs}: loss {record.train_loss:.4f} "
                f"acc {record.train_accuracy:.4f} val_loss {val_loss:.4f} val_acc {val_acc:.4f} "
                f"({epoch_time:.1f} s)",
                flush=True,
            )
    test_loss, test_acc, predictions = evaluate(model, data.x_test, data.y_test)
    emit({"event": "end", "test_loss": test_loss, "test_accuracy": test_acc})
    result = finish_result(
        framework=FRAMEWORK,
        backend="numpy",
        device=f"cpu ({parallel.workers()} threads)",
        versions=package_versions(["numpy"]),
        dataset=data.name,
        class_names=data.class_names,
        model_spec=spec,
        train_spec=train_spec,
        init="shared" if init_weights is not None else "native",
        history=history,
        step_losses=step_losses,
        test_loss=test_loss,
        y_test=data.y_test,
        y_pred=predictions,
        n_train=n_train,
        wall_time_s=time.perf_counter() - started,
        extra={"resumed_from_epoch": start_epoch} if start_epoch else None,
    )
    save_weights(out_dir / WEIGHTS_FILE, model.weights, spec, train_spec)
    result.to_json(out_dir / RESULT_FILE)
    if progress:
        print(f"test loss {test_loss:.4f} test accuracy {test_acc:.4f} -> {out_dir}", flush=True)
    return result


def _progress_bar(enabled: bool, steps: int, epoch: int, epochs: int) -> Any:
    """A tqdm bar on stderr for one epoch, or None when progress is off."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", unit="step", file=sys.stderr)
