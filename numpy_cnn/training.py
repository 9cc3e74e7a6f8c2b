"""Training: the shared batch order and augmentation, one checkpoint per epoch, resume.

A checkpoint (``checkpoints/epoch-0003.npz``) holds everything the rest of the run depends on:
the weights, the optimiser state (Adam's ``m``, ``v``, ``t`` or SGD's velocity, and the updates
taken, the schedule's position), the dropout
generator's state and the recorder's state (history, step losses, spec). Resuming from it
replays nothing and continues with exactly the numbers an uninterrupted run would have used,
so both end with bit-identical weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cnn_common.batches import augment_batch, epoch_batches, steps_per_epoch
from cnn_common.data import Data
from cnn_common.errors import UserError
from cnn_common.files import atomic_write_npz, check_resumable, checkpoint_path
from cnn_common.phases import Phases, StepClock, step_batches
from cnn_common.recorder import RunRecorder
from cnn_common.results import RunResult, package_versions
from cnn_common.seeds import generator
from cnn_common.spec import ModelSpec, TrainSpec, spec_to_dict
from cnn_common.trainer import TrainCall, contract_train
from cnn_common.weights import Weights
from numpy_cnn import parallel
from numpy_cnn.framework import FRAMEWORK
from numpy_cnn.model import build, evaluate, set_weights
from numpy_cnn.network import CNN
from numpy_cnn.optim import Optimizer
from numpy_cnn.step import PIECE, train_step

SUFFIX = ".npz"


def save_checkpoint(
    path: Path, model: CNN, optimizer: Optimizer, rng: np.random.Generator, recorder: RunRecorder
) -> None:
    """Write one checkpoint atomically (a run killed while writing keeps the previous one)."""
    meta = {
        "recorder": recorder.state(),
        "adam_steps": optimizer.steps(),
        "updates": optimizer.updates,
        "rng_state": rng.bit_generator.state,
    }
    arrays = {f"weights/{k}": v for k, v in model.weights.items()}
    arrays.update({f"optimizer/{k}": v for k, v in optimizer.arrays().items()})
    atomic_write_npz(path, {"meta": np.array(json.dumps(meta)), **arrays})


def load_checkpoint(
    path: Path,
    model: CNN,
    optimizer: Optimizer,
    rng: np.random.Generator,
    recorder: RunRecorder,
) -> None:
    """Restore model, optimiser, generator and recorder from ``path``; a checkpoint of another
    spec raises ``UserError``."""
    with np.load(path) as archive:
        meta = json.loads(str(archive["meta"]))
        weights = {
            k[len("weights/") :]: archive[k] for k in archive.files if k.startswith("weights/")
        }
        opt = {
            k[len("optimizer/") :]: archive[k] for k in archive.files if k.startswith("optimizer/")
        }
    check_resumable(
        meta["recorder"]["spec"], spec_to_dict(model.spec, recorder.train_spec), path.parent
    )
    set_weights(model, weights)
    optimizer.restore(opt, meta["adam_steps"], meta["updates"])
    rng.bit_generator.state = meta["rng_state"]
    recorder.restore(meta["recorder"])


@contract_train(FRAMEWORK)
def train(run: TrainCall) -> RunResult:
    """Train a model of ``spec`` on ``data`` as ``train_spec`` says and write the run record.

    ``data.x_train (N, H, W, C)`` floats in [0, 1] with int64 labels; batches come from
    ``epoch_batches`` (this loop never shuffles on its own); ``init_weights`` None -> ``build``'s
    own. ``device`` must be "auto" or "cpu" (NumPy runs on the CPU); ``name`` defaults to
    ``numpy`` (a package that publishes this loop under its own name passes its own).
    ``native={"order"}`` shuffles with NumPy's own permutation instead of the shared order;
    ``"padding"`` and ``"optimizer"`` change nothing (NumPy pads as the spec says and steps the
    spec's update rule: it has no 'same' or optimiser of its own).
    """
    if run.device not in ("auto", "cpu"):
        raise UserError(
            f"numpy_cnn runs on the CPU only, got device={run.device!r}",
            "use --device cpu (or auto), or another framework for a GPU",
        )
    spec, train_spec, data = run.spec, run.train_spec, run.data
    model = build(spec, train_spec.dtype, seed=train_spec.seed)
    run.initialise(model, set_weights)
    per_epoch = steps_per_epoch(len(data.x_train), train_spec.batch_size)
    optimizer = Optimizer(train_spec, model.trainable_weights(), per_epoch)
    rng = generator(train_spec.seed, "dropout")
    recorder = run.new_recorder()
    run.resume_checkpoint(
        SUFFIX, lambda path: load_checkpoint(path, model, optimizer, rng, recorder)
    )
    recorder.start(model.weights)
    x_train = data.x_train.astype(model.dtype, copy=False)
    for epoch in range(recorder.epochs_done, train_spec.epochs):
        recorder.begin_epoch(epoch)
        stream = "native_order" if "order" in run.native else "order"
        batches = epoch_batches(len(x_train), train_spec.batch_size, train_spec.seed, epoch, stream)
        for step, index in enumerate(batches):
            xb = augment_batch(
                x_train[index], train_spec.augment_shift, train_spec.seed, epoch, step
            )  # (B, H, W, C)
            loss, correct = train_step(model, optimizer, xb, data.y_train[index], rng)
            recorder.step(loss, correct, len(index))
        val_loss, val_acc, _ = evaluate(model, data.x_val, data.y_val)
        recorder.end_epoch(val_loss, val_acc)
        save_checkpoint(
            checkpoint_path(run.out_dir, epoch + 1, SUFFIX), model, optimizer, rng, recorder
        )
    test_loss, _, predictions = evaluate(model, data.x_test, data.y_test)
    return recorder.finish(
        backend="numpy",
        device=f"cpu ({parallel.workers()} threads)",
        versions=package_versions(["numpy"]),
        test_loss=test_loss,
        predictions=predictions,
        weights=model.weights,
        threads=parallel.workers(),
    )


def phase_times(
    spec: ModelSpec, train_spec: TrainSpec, data: Data, init_weights: Weights, steps: int
) -> Phases:
    """``steps`` training steps of the shared order from ``init_weights``, each timed by phase
    (``cnn_common.phases``): data (the batch gathered and augmented), forward + loss,
    backward, optimiser (the threads' gradients added, the update)."""
    model = build(spec, train_spec.dtype, seed=train_spec.seed)
    set_weights(model, init_weights)
    per_epoch = steps_per_epoch(len(data.x_train), train_spec.batch_size)
    optimizer = Optimizer(train_spec, model.trainable_weights(), per_epoch)
    rng = generator(train_spec.seed, "dropout")
    x_train = data.x_train.astype(model.dtype, copy=False)
    clock = StepClock()
    for epoch, step, index in step_batches(len(x_train), train_spec, steps):
        clock.start()
        xb = augment_batch(x_train[index], train_spec.augment_shift, train_spec.seed, epoch, step)
        yb = data.y_train[index]
        clock.mark("data")
        train_step(model, optimizer, xb, yb, rng, clock)
        clock.end_step()
    split = (
        "one shard of the batch per thread (batchnorm normalises with the whole batch)"
        if model.batchnorm
        else f"pieces of {PIECE} images on each thread"
    )
    clock.phases.note = (
        f"forward and backward alternate in {split}, {parallel.workers()} threads: the wall "
        "time of that part is split between them in the proportion of the threads' time in each"
    )
    return clock.phases
