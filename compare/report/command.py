"""``cnn-compare report DIR``: render the report of a results folder again."""

from __future__ import annotations

import argparse
from pathlib import Path

from compare.report.outputs import write_outputs

DESCRIPTION = (
    "Read a results folder (the --out of `cnn-compare run`) and write its results.json, "
    "history.csv, figures/, report.md and report.html again."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``cnn-compare report``."""
    parser.add_argument("dir", type=Path, help="the results folder")


def main(args: argparse.Namespace) -> int:
    """Write the folder's report; print one line per framework and the report's path."""
    for line in write_outputs(args.dir):
        print(line)
    return 0
