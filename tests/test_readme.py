"""The README is true: its Python snippet runs as shown, its quick start is what CI runs, and
the folder layout it describes is the one the code writes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from compare.engine import layout

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_the_python_snippet_runs_as_shown(data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    (snippet,) = code_blocks("python")
    done = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=tmp_path,  # the Trainer writes its checkpoints below the working folder
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CNN_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    accuracy = float(re.search(r"tensor\(([\d.]+)", done.stdout).group(1))
    assert 0.5 < accuracy <= 1.0  # one epoch on 2,000 images learns something
    assert (tmp_path / "model.onnx").stat().st_size > 1000  # to_onnx with no input given


def test_the_quick_start_is_what_ci_runs() -> None:
    (quick, *_) = code_blocks("bash")
    commands = [line.split("#")[0].strip() for line in quick.splitlines() if line.strip()]
    assert commands == ["python3 dev.py run", "python3 dev.py test"]
    ci = (REPO / ".ci" / "run").read_text()
    assert "python3 dev.py test\n" in ci and "python3 dev.py lint" in ci
    makefile = (REPO / "Makefile").read_text()
    assert "python3 dev.py run" in makefile and "python3 dev.py test" in makefile


def test_the_folder_layout_is_the_written_one() -> None:
    # the README draws runs/compare/ and, below it, runs/<framework>-seed<N>/
    assert layout.run_dir(Path("runs/compare"), "numpy", 3) == Path("runs/compare/runs/numpy-seed3")
    assert "runs/compare/\n" in README and "  runs/<framework>-seed<N>/" in README
    for name in (
        layout.CONFIG_FILE,
        layout.RESULTS_FILE,
        layout.HISTORY_FILE,
        layout.REPORT_MD,
        layout.REPORT_HTML,
        layout.CROSSEVAL_FILE,
        layout.RESULT_FILE,
        layout.WEIGHTS_FILE,
        layout.EVENTS_FILE,
        layout.LOG_FILE,
        layout.FEATURES_FILE,
    ):
        assert name in README, name


def test_every_command_the_readme_names_exists() -> None:
    scripts = re.findall(r"^([a-z-]+)\s*=", (REPO / "pyproject.toml").read_text(), re.M)
    named = set(re.findall(r"^(numpy-cnn|keras-cnn|pytorch-cnn|lightning-cnn|cnn-compare) ",
                           README, re.M))  # fmt: skip
    assert named and named <= set(scripts)
    subcommands = set(re.findall(r"^cnn-compare ([a-z]+)", README, re.M))
    help_text = subprocess.run(
        [sys.executable, "-m", "compare", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in subcommands:
        assert re.search(rf"^\s+{name}\s", help_text, re.M), name
