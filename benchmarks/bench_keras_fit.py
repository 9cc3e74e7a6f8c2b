"""One Keras training epoch through the shared batch order against a plain ``model.fit``.

Arms, on the same model and starting weights, each one ``fit`` call of several epochs (as a
real run is), timed per epoch by the same callback:

- ``plain``: ``model.fit(x, y, batch_size=128, shuffle=True)``: Keras's own array pipeline;
- ``shared-order``: what ``keras_cnn.train`` runs: ``EpochBatches`` (a ``PyDataset`` over
  ``epoch_batches``), ``shuffle=False``, the ``StepLoss`` metric and ``RunRecorder`` (every
  step's loss read back, NaN check, events, the per-epoch checkpoint);
- ``pydataset-only``: the same ``PyDataset`` with ``plain``'s compile and no recorder, to split
  the cost of the Python data pipeline from that of the recording.

The first epoch of every fit traces the step function and is not counted. The arms run in
``--rounds`` rounds, the order reversed each round so drift on a shared machine hits all of
them. Prints, per arm, the median epoch time and the median step interval (robust to bursts
of load on a shared machine) with their ratios to ``plain``; no validation in any arm.

    CNN_DATA_DIR=../shared/data python benchmarks/bench_keras_fit.py
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from cnn_common.data import prepare_data, subset  # noqa: E402
from cnn_common.spec import ModelSpec, TrainSpec  # noqa: E402
from cnn_common.weights import init_weights  # noqa: E402
from keras_cnn import model as km  # noqa: E402
from keras_cnn import train as kt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per arm and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the arms")
    parser.add_argument("--subset", type=int, help="first N training images (default: all)")
    args = parser.parse_args()

    spec, train_spec = ModelSpec(), TrainSpec()
    data = prepare_data("mnist", seed=train_spec.seed)
    if args.subset:
        data = subset(data, args.subset)
    no_validation = subset(data, len(data.x_train), 0, 0)
    weights = init_weights(spec, train_spec.seed)
    workdir = Path(tempfile.mkdtemp(prefix="bench_keras_fit_"))

    def fresh(with_step_loss: bool) -> keras.Model:
        model = km.build(spec)
        km.set_weights(model, weights)
        if with_step_loss:
            km.compile_model(model, train_spec)
        else:
            model.compile(
                optimizer=km.make_optimizer(train_spec),
                loss=km.cross_entropy("float32"),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            )
        return model

    def plain(timer: EpochTimer, epochs: int) -> None:
        fresh(False).fit(
            data.x_train,
            data.y_train,
            batch_size=train_spec.batch_size,
            epochs=epochs,
            shuffle=True,
            verbose=0,
            callbacks=[timer],
        )

    def shared_order(timer: EpochTimer, epochs: int) -> None:
        dataset = kt.EpochBatches(data.x_train, data.y_train, train_spec)
        state = {"spec": {}, "init": "shared", "history": [], "step_losses": []}
        recorder = kt.RunRecorder(dataset, workdir, state, on_event=lambda event: None)
        until = dataclasses.replace(train_spec, epochs=epochs)
        kt._fit(fresh(True), dataset, no_validation, until, 0, False, [recorder, timer])

    def pydataset_only(timer: EpochTimer, epochs: int) -> None:
        dataset = kt.EpochBatches(data.x_train, data.y_train, train_spec)
        setter = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: dataset.set_epoch(e))
        fresh(False).fit(
            dataset, epochs=epochs, shuffle=False, verbose=0, callbacks=[setter, timer]
        )

    arms = {"plain": plain, "shared-order": shared_order, "pydataset-only": pydataset_only}
    times: dict[str, list[float]] = {name: [] for name in arms}
    steps: dict[str, list[float]] = {name: [] for name in arms}
    for round_index in range(args.rounds):
        order = list(arms) if round_index % 2 == 0 else list(arms)[::-1]
        for name in order:
            timer = EpochTimer()
            arms[name](timer, args.epochs + 1)
            times[name] += timer.times[1:]  # the first epoch traces
            steps[name] += [step for epoch in timer.steps[1:] for step in epoch]
    shutil.rmtree(workdir)  # the shared-order arm's checkpoints

    n = len(data.x_train)
    base = statistics.median(times["plain"])
    base_step = statistics.median(steps["plain"])
    print(
        f"MNIST, {n} training images, batch {train_spec.batch_size}, backend "
        f"{keras.backend.backend()}, {args.rounds} rounds x {args.epochs} timed epochs per arm"
    )
    print(
        f"{'arm':16s} {'epoch s':>8s} {'images/s':>9s} {'ratio':>6s} "
        f"{'step ms':>8s} {'ratio':>6s}   epochs (s)"
    )
    for name, values in times.items():
        median, step = statistics.median(values), statistics.median(steps[name])
        line = (
            f"{name:16s} {median:8.2f} {n / median:9.0f} {median / base:6.2f} "
            f"{step * 1e3:8.2f} {step / base_step:6.2f}   "
        )
        print(line + " ".join(f"{v:.2f}" for v in values))


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch, and of every step after an epoch's first: the interval
    between two batch ends holds the data pipeline, the step and the callbacks. The median
    step is robust to the bursts of load a shared machine has; the epoch time is the total."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.steps: list[list[float]] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.start = self.last = time.perf_counter()
        self.steps.append([])

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        if batch:
            self.steps[-1].append(now - self.last)
        self.last = now

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.times.append(time.perf_counter() - self.start)


if __name__ == "__main__":
    main()
