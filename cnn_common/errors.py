"""User-facing errors: a message naming the problem and a hint naming the fix.

Command-line entry points catch ``UserError`` (see ``run_cli``), print both lines and exit with
status 2, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix: bad spec, missing data, a framework not installed, ..."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class SpecError(UserError, ValueError):
    """An impossible or malformed model/training spec."""


class DataError(UserError):
    """A data file that is missing, truncated, corrupt or fails its checksum."""


class ImageError(UserError, ValueError):
    """Images of the wrong shape or dtype for the model."""


class WeightsError(UserError, ValueError):
    """Weights that do not fit the model: missing or extra tensors, wrong shapes."""


class NonFiniteLossError(UserError):
    """Training produced a NaN or infinite loss."""


class FrameworkMissingError(UserError):
    """A framework package (keras, torch, lightning) is not installed."""


def run_cli(main: Callable[[], int | None], prog: str, argv: list[str] | None = None) -> int:
    """Run ``main`` and turn a ``UserError`` into ``prog: error: ...`` on stderr and exit 2.

    The command line (``prog`` and ``argv``, default the process's) is put in
    ``CNN_COMMAND``: run records carry it as the command that reproduces them, and worker
    processes inherit it.
    """
    args = sys.argv[1:] if argv is None else argv
    os.environ["CNN_COMMAND"] = shlex.join([prog, *args])
    try:
        return int(main() or 0)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
