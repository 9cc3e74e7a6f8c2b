"""Reading a results folder: every run record, every failure, and the parity, bench, ablation,
cross-evaluation and rosetta results and each run's deployment table when they are there.

Only what the runs left on disk is read (``compare.engine.layout`` names every file), so a report
can be rendered again from a copied folder, without training, the dataset or even the
frameworks installed: a framework the registry does not know is kept and sorted last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnn_common.errors import UserError
from cnn_common.results import RunResult
from compare.engine import registry
from compare.engine.layout import (
    ABLATION_FILE,
    BENCH_FILE,
    CONFIG_FILE,
    CONVERT_FILE,
    CONVERTED_DIR,
    CROSSEVAL_FILE,
    FAILED_FILE,
    PARITY_FILE,
    RESULT_FILE,
    ROSETTA_FILE,
    RUNS_DIR,
    WALL_FILE,
    parse_run_dir,
)

KILLED = "no result: the run was interrupted (complete it with --resume)"


@dataclass
class Collected:
    """Everything found in a results folder; ``runs[i]`` was read from ``run_dirs[i]``."""

    config: dict[str, Any]
    out: Path = Path(".")  # the folder it was read from
    frameworks: list[str] = field(default_factory=list)  # of the run, in report order
    runs: list[RunResult] = field(default_factory=list)
    run_dirs: list[Path] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # framework, seed, kind, error
    parity: dict[str, Any] | None = None
    bench: dict[str, Any] | None = None
    ablation: dict[str, Any] | None = None
    crosseval: dict[str, Any] | None = None
    rosetta: dict[str, Any] | None = None  # layer kind -> framework -> source entries
    wall: dict[str, Any] | None = None  # sessions: [{started, seconds, resumed}]
    # run folder name -> its deployment table (``cnn-compare convert`` into RUN/converted)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)

    def first_seeds(self) -> list[tuple[RunResult, Path]]:
        """Each framework's run of the lowest seed and its folder: what per-run figures show."""
        seen: dict[str, tuple[RunResult, Path]] = {}
        for run, path in zip(self.runs, self.run_dirs, strict=True):
            seen.setdefault(run.framework, (run, path))
        return list(seen.values())


def framework_order(name: str) -> tuple[int, str]:
    """Sort key of a framework: registry order, then unknown names alphabetically."""
    known = list(registry.frameworks())
    return (known.index(name), "") if name in known else (len(known), name)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON file at ``path`` (None when there is none); a damaged one is a user error."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise UserError(
            f"{path} is damaged and cannot be read ({exc})",
            "remove it, or rerun the command that wrote it (with --overwrite)",
        ) from None


def collect(out: Path) -> Collected:
    """Read every run under ``out/runs``, by seed then framework; a run folder without a
    record or a failure was interrupted and counts as a ``killed`` failure."""
    out = Path(out)
    if not out.is_dir():
        raise UserError(f"{out} is not a folder", "give the --out folder of a `cnn-compare run`")
    extras = {
        "parity": _read_json(out / PARITY_FILE),
        "bench": _read_json(out / BENCH_FILE),
        "ablation": _read_json(out / ABLATION_FILE),
        "crosseval": _read_json(out / CROSSEVAL_FILE),
    }
    config = _read_json(out / CONFIG_FILE)
    if config is None and not any(extras.values()):
        raise UserError(
            f"{out} is not a results folder (no {CONFIG_FILE}, {PARITY_FILE}, {BENCH_FILE} "
            f"or {ABLATION_FILE})",
            "give the --out folder of `cnn-compare run`, `parity`, `bench` or `ablate`",
        )
    found = Collected(
        config=config or {},
        out=out,
        wall=_read_json(out / WALL_FILE),
        rosetta=_read_json(out / ROSETTA_FILE),  # shown beside results, not one on its own
        **extras,
    )
    runs_dir = out / RUNS_DIR
    named = [(parse_run_dir(p), p) for p in runs_dir.iterdir()] if runs_dir.is_dir() else []
    folders = sorted(
        ((key, path) for key, path in named if key is not None and path.is_dir()),
        key=lambda item: (item[0][1], framework_order(item[0][0])),
    )
    for (framework, seed), path in folders:
        failed = _read_json(path / FAILED_FILE)
        if failed is not None:
            found.failures.append({"framework": framework, "seed": seed, **failed})
        elif (path / RESULT_FILE).is_file():
            found.runs.append(RunResult.from_json(path / RESULT_FILE))
            found.run_dirs.append(path)
            converted = _read_json(path / CONVERTED_DIR / CONVERT_FILE)
            if converted and converted.get("deployment"):
                found.deployments[path.name] = converted["deployment"]
        else:
            found.failures.append(
                {"framework": framework, "seed": seed, "kind": "killed", "error": KILLED}
            )
    found.frameworks = list(
        found.config.get("frameworks") or dict.fromkeys(framework for (framework, _), _ in folders)
    )
    return found


def completed(path: Path) -> bool:
    """True when the run folder ``path`` holds a finished, successful run record."""
    try:
        return RunResult.from_json(path / RESULT_FILE).status == "ok"
    except (OSError, ValueError, TypeError, KeyError):
        return False
