"""``cnn-compare``: train the frameworks side by side, check their parity, time them, report.

The commands come from the registered features (``compare.engine.features``): each adds its
sub-parser (``configure``, its ``--help`` text ``DESCRIPTION``) and runs it (``main``);
nothing here names one.
"""

from __future__ import annotations

import argparse
import sys

from cnn_common.cli import HelpFormatter
from cnn_common.errors import run_cli
from cnn_common.framework import EXIT_STATUSES
from compare.engine.features import commands, resolve
from compare.engine.options import PROG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train one CNN in several frameworks from one spec and one data pipeline, "
        "and show where and why they differ.",
        epilog=EXIT_STATUSES,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for feature in commands():
        module = resolve(feature.command)
        command = sub.add_parser(
            feature.name,
            help=feature.help,
            description=getattr(module, "DESCRIPTION", None),
            formatter_class=HelpFormatter,
            epilog=EXIT_STATUSES,
        )
        module.configure(command)
        command.set_defaults(main=resolve(f"{feature.command}:main"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print ``cnn-compare: error: ...`` and return 2."""
    return run_cli(lambda: _main(argv), PROG, argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    return args.main(args)


if __name__ == "__main__":
    sys.exit(main())
