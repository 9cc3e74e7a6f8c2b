"""The live terminal display of ``cnn-compare run``: one row per (framework, seed), fed by the
workers' events, drawn with rich (whose progress bars Lightning's own bar builds on).

The display is transient: when the run ends the rows are cleared and only the summary lines
the runner prints stay, so the final screen holds one clean line per framework.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from cnn_common.events import End, Epoch, Event, EventCallback, Start, Step


class RunDisplay:
    """A row per run label; ``event`` moves its bar, ``note`` writes its status.

    ``totals`` gives a row its number of steps up front (a row that stands for several runs);
    a row without one takes it from its run's ``Start`` event.
    """

    def __init__(
        self,
        labels: list[str],
        enabled: bool,
        file: TextIO | None = None,
        totals: dict[str, int] | None = None,
    ) -> None:
        self.tasks: dict[str, TaskID] = {}
        self.totals = dict(totals or {})
        self.progress: Progress | None = None
        if not enabled or not labels:
            return
        width = max(len(label) for label in labels)
        self.progress = Progress(
            TextColumn(f"{{task.description:<{width}}}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(file=file or sys.stderr),
            transient=True,
        )
        for label in labels:
            total = self.totals.get(label)
            self.tasks[label] = self.progress.add_task(label, total=total, info="waiting")
        self.progress.start()

    def event(self, label: str, event: Event) -> None:
        if self.progress is None or label not in self.tasks:
            return
        task = self.tasks[label]
        if isinstance(event, Start):
            done = event.start_epoch * event.steps_per_epoch
            if label in self.totals:  # one run of several: count what it skips
                self.progress.update(task, advance=done, info="starting")
            else:
                total = event.epochs * event.steps_per_epoch
                self.progress.update(task, total=total, completed=done, info="starting")
        elif isinstance(event, Step):
            self.progress.update(
                task,
                advance=1,
                info=f"epoch {event.epoch}  loss {event.loss:.4f}  acc {event.accuracy:.4f}",
            )
        elif isinstance(event, Epoch):
            self.progress.update(
                task,
                info=f"epoch {event.epoch}  val_loss {event.val_loss:.4f}  "
                f"val_acc {event.val_accuracy:.4f}",
            )
        elif isinstance(event, End):
            self.progress.update(task, info=f"test accuracy {100 * event.test_accuracy:.2f} %")

    def listener(self, label: str) -> EventCallback:
        """A callback that feeds ``label``'s row."""
        return lambda event: self.event(label, event)

    def note(self, label: str, text: str) -> None:
        if self.progress is not None and label in self.tasks:
            self.progress.update(self.tasks[label], info=text)

    def finish(self, label: str) -> None:
        """Stop a finished run's clock."""
        if self.progress is not None and label in self.tasks:
            self.progress.stop_task(self.tasks[label])

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
