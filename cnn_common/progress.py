"""What a trainer shows on the terminal when run by hand: one bar per epoch, one line after it.

``ConsoleProgress`` is an event listener (``cnn_common.events``), so every trainer prints the
same thing from the same events: the bar on stderr, the epoch and test lines on stdout.
"""

from __future__ import annotations

import sys
from typing import Any

from cnn_common.events import End, Epoch, Event, Start, Step


class ConsoleProgress:
    """Prints a run's progress: a tqdm bar per epoch (stderr) and a summary line per epoch."""

    def __init__(self) -> None:
        self.epochs = 0
        self.bar: Any = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Start):
            self.epochs = event.epochs
            if event.start_epoch:
                print(f"resuming after epoch {event.start_epoch}/{event.epochs}", flush=True)
        elif isinstance(event, Step):
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(
                    total=event.steps,
                    desc=f"epoch {event.epoch}/{self.epochs}",
                    unit="step",
                    file=sys.stderr,
                    leave=False,
                )
            self.bar.update(1)
            if event.step % 20 == 1 or event.step == event.steps:
                self.bar.set_postfix(loss=f"{event.loss:.4f}", acc=f"{event.accuracy:.4f}")
        elif isinstance(event, Epoch):
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            print(
                f"epoch {event.epoch}/{self.epochs}: loss {event.train_loss:.4f} "
                f"acc {event.train_accuracy:.4f} val_loss {event.val_loss:.4f} "
                f"val_acc {event.val_accuracy:.4f} ({event.time_s:.1f} s)",
                flush=True,
            )
        elif isinstance(event, End):
            print(
                f"test loss {event.test_loss:.4f} test accuracy {event.test_accuracy:.4f}",
                flush=True,
            )
