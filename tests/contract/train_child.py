"""A training run in a process of its own, for the kill-and-resume test of the contract.

``python -m tests.contract.train_child NAME OUT EPOCHS [--kill-at EPOCH:STEP] [--resume]``
trains framework NAME on the first 600 MNIST images (``$CNN_DATA_DIR``) from the shared
weights, with a per-step cosine schedule after a warm-up and decoupled weight decay (so a
resumed run must pick the schedule up where it stopped); with ``--kill-at`` the process sends
itself SIGKILL when it reaches that step, which is as abrupt as a kill from outside but lands
at the same point every time.
"""

from __future__ import annotations

import argparse
import os
import signal

from cnn_common.data import training_data
from cnn_common.events import Event, Step
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.weights import init_weights
from compare.engine import registry

SCHEDULED = {
    "lr_schedule": "cosine",
    "lr_interval": "step",
    "lr_warmup": 2,
    "weight_decay": 1e-2,
    "weight_decay_convention": "decoupled",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("out")
    parser.add_argument("epochs", type=int)
    parser.add_argument("--kill-at")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    framework = registry.load(args.name)
    spec, train = ModelSpec(), TrainSpec(**SCHEDULED, epochs=args.epochs, batch_size=100)
    data = training_data("mnist", train, subset_size=600, eval_size=200)
    kill_at = tuple(int(v) for v in args.kill_at.split(":")) if args.kill_at else None

    def on_event(event: Event) -> None:
        if kill_at and isinstance(event, Step) and (event.epoch, event.step) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    framework.train(
        spec,
        train,
        data,
        args.out,
        init_weights=init_weights(spec, train.seed),
        on_event=on_event,
        resume=args.resume,
        progress=False,
    )


if __name__ == "__main__":
    main()
