"""examples/walkthrough.py, the jupytext notebook: converted and executed on a small subset,
every cell runs and the outputs show what the text says they show."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("torch")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "walkthrough.py"


def _text(cell: dict) -> str:
    """Everything a code cell printed (stream outputs)."""
    return "".join(out.get("text", "") for out in cell.get("outputs", ()))


def test_walkthrough_runs(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    # A kernel of this very interpreter, whatever kernels the machine has registered.
    kernels = tmp_path / "jupyter" / "kernels" / "cnn-rosetta-test"
    kernels.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cnn-rosetta test",
        "language": "python",
    }
    (kernels / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("CNN_DATA_DIR", str(data_dir))
    monkeypatch.setenv("WALKTHROUGH_SUBSET", "256")
    monkeypatch.setenv("WALKTHROUGH_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")

    notebook = jupytext.read(NOTEBOOK)
    nbclient.NotebookClient(
        notebook,
        kernel_name="cnn-rosetta-test",
        timeout=600,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()  # raises CellExecutionError on the first failing cell

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    printed = "\n".join(_text(cell) for cell in code)
    assert "256 training, 1000 validation and 1000 test images" in printed
    accuracies = re.findall(r"^(numpy|pytorch) +test accuracy (\d\.\d{4})", printed, re.M)
    assert [name for name, _ in accuracies] == ["numpy", "pytorch"]
    assert all(0.1 <= float(value) <= 1 for _, value in accuracies)
    row = r"^ +(\d+) +(\d\.\d{6}) +(\d\.\d{6}) +([+-]\d\.\d{2}e[+-]\d\d)$"
    steps = re.findall(row, printed, re.M)
    assert [int(s[0]) for s in steps] == [1, 2]  # 256 images: two batches of 128
    assert abs(float(steps[0][1]) - float(steps[0][2])) < 1e-5  # the same start
    assert "mean step-loss difference numpy - pytorch" in printed
    assert "first departure: None" in printed  # one batch agrees layer by layer
    assert "walk-through maps equal feature_maps: True" in printed
    gap = re.search(r"logits vs predict_logits: largest difference (\S+)", printed)
    assert gap is not None and float(gap.group(1)) < 1e-5
    assert re.search(r"all \d+ checks PASS", printed)
    images = [out for cell in code for out in cell.outputs if "image/png" in out.get("data", {})]
    assert len(images) == 1  # the conv demo's figure
    assert (tmp_path / "out" / "numpy" / "run.json").is_file()
    assert (tmp_path / "out" / "pytorch" / "run.json").is_file()
