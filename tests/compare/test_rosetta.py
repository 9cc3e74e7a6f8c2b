"""``cnn-compare rosetta``: every framework's source for every layer kind of the seed spec,
read from the installed code, on a page of its own and in the report."""

from __future__ import annotations

import html
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_common.spec import DenseLayer, ModelSpec, TrainSpec
from compare.engine import registry
from compare.report.outputs import write_outputs
from compare.report.render import Details, Section, write_html, write_markdown
from compare.rosetta import command as rosetta
from compare.rosetta.task import resolve, source_entry

REPO = Path(__file__).resolve().parents[2]
FOUR = ("numpy", "keras", "pytorch", "lightning")
SEED_KINDS = ["conv", "activation", "pool", "flatten", "dense", "loss", "adam"]
# The fixture's spec adds weight decay and a schedule to the seed's: their kinds follow.
MADE_KINDS = [*SEED_KINDS, "weight_decay", "lr_schedule"]
# Objects each framework must show for a kind, and what their source must hold.
EXPECTED = {
    ("numpy", "conv"): ("numpy_cnn.ops:conv2d_forward", "def conv2d_forward("),
    ("numpy", "pool"): ("numpy_cnn.pooling:maxpool_forward", "def maxpool_forward("),
    ("numpy", "adam"): ("numpy_cnn.optim:adam", "def adam("),
    ("keras", "conv"): ("keras.layers:Conv2D.call", "def call("),
    ("keras", "dense"): ("keras.layers:Dense.call", "def call("),
    ("keras", "adam"): ("keras_cnn.optim:TorchAdam.update_step", "def update_step("),
    ("pytorch", "conv"): ("pytorch_cnn.network:SpecConv2d.forward", "def forward("),
    ("pytorch", "pool"): ("torch.nn:MaxPool2d.forward", "def forward("),
    ("pytorch", "adam"): ("torch.optim.adam:_single_tensor_adam", "def _single_tensor_adam("),
    ("lightning", "loss"): ("lightning_cnn.module:LitCNN.training_step", "def training_step("),
    ("lightning", "conv"): ("pytorch_cnn.network:SpecConv2d.forward", "def forward("),
    ("numpy", "weight_decay"): ("numpy_cnn.optim:Optimizer.step", "weight_decay"),
    ("keras", "weight_decay"): (
        "keras_cnn.optim:SpecDecay._apply_weight_decay",
        "def _apply_weight_decay(",
    ),
    ("pytorch", "weight_decay"): ("torch.optim.adam:_single_tensor_adam", "weight_decay"),
    ("pytorch", "lr_schedule"): ("pytorch_cnn.optim:set_learning_rate", "learning_rate("),
    ("keras", "lr_schedule"): ("keras_cnn.optim:SpecSchedule.__call__", "def __call__("),
    ("lightning", "lr_schedule"): ("lightning_cnn.module:LitCNN.optimizer_step", "def optimizer_"),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``cnn-compare rosetta`` of the four frameworks, each in its own process."""
    missing = [module for name in FOUR for module in registry.missing_modules(name)]
    if missing:
        pytest.skip(f"not installed: {', '.join(sorted(set(missing)))}")
    out = tmp_path_factory.mktemp("rosetta")
    done = subprocess.run(
        [sys.executable, "-m", "compare", "rosetta", "--frameworks", ",".join(FOUR)]
        + ["--set", "weight_decay=0.01", "--set", "lr_schedule=cosine", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done.stdout


def test_every_framework_every_kind_from_the_source(made: tuple[Path, str]) -> None:
    out, printed = made
    assert f"wrote {out / 'rosetta.json'} and {out / 'rosetta.html'}" in printed
    sources = json.loads((out / "rosetta.json").read_text())
    assert list(sources) == MADE_KINDS
    for kind, by_framework in sources.items():
        assert list(by_framework) == list(FOUR)
        for name, entries in by_framework.items():
            assert entries, (kind, name)
            for entry in entries:
                assert set(entry) == {"object", "file", "line", "source"}, entry
                assert "def " in entry["source"] and entry["line"] > 0, entry["object"]
                assert entry["file"].endswith(".py") and not Path(entry["file"]).is_absolute()
    for (name, kind), (obj, text) in EXPECTED.items():
        entries = {e["object"]: e for e in sources[kind][name]}
        assert obj in entries, (name, kind, list(entries))
        assert text in entries[obj]["source"]
    # Keras's backend code is the backend's own: TensorFlow's for the keras framework.
    (backend,) = [e for e in sources["conv"]["keras"] if e["object"].startswith("keras.src")]
    assert backend["file"] == "keras/src/backend/tensorflow/nn.py"


def test_page_is_self_contained_with_a_column_per_framework(made: tuple[Path, str]) -> None:
    out, _ = made
    page = (out / "rosetta.html").read_text()
    sources = json.loads((out / "rosetta.json").read_text())
    assert "<script" not in page and "<link" not in page and " src=" not in page
    for kind in SEED_KINDS:
        assert f"<section id='rosetta-{kind}'>" in page
        assert f"<h2>{rosetta.KINDS[kind]}</h2>" in page
        for name in FOUR:
            assert f"<div id='rosetta-{kind}-{name}'><h3>{name}</h3>" in page
    first = sources["adam"]["numpy"][0]["source"].splitlines()[0]  # "def adam(...) -> ...:"
    assert "->" in first and html.escape(first) in page and first not in page  # escaped


def test_report_section(made: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = made
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "rosetta.json").write_text((out / "rosetta.json").read_text())
    write_outputs(tmp_path)
    md = (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    title = "Rosetta: the same layer in every framework"
    assert f"## {title}" in md and "| layer kind | numpy | keras | pytorch | lightning |" in md
    conv_row = re.search(r"^\| Convolution \| conv2d_forward \(\d+\)<br>im2col .*$", md, re.M)
    assert conv_row and "| Conv2D.call (" in conv_row[0] and "| SpecConv2d.forward (" in conv_row[0]
    assert "<details><summary>Optimiser step: Adam: keras</summary>" in md
    for kind in SEED_KINDS:
        for name in FOUR:
            anchor = f"rosetta-{kind}-{name}"
            assert f"<a href='#{anchor}'>" in page and f"<details id='{anchor}'>" in page
    assert "# keras_cnn.optim:TorchAdam.update_step  (keras_cnn/optim.py:" in page


def test_kinds_follow_the_spec() -> None:
    assert rosetta.kinds_of(ModelSpec(), TrainSpec()) == SEED_KINDS
    spec = ModelSpec(dense=(DenseLayer(units=8, activation="tanh", dropout=0.5),))
    kinds = rosetta.kinds_of(spec, TrainSpec(optimizer="sgd"))
    assert kinds == ["conv", "activation", "pool", "flatten", "dense", "dropout", "loss", "sgd"]
    decayed = rosetta.kinds_of(ModelSpec(), TrainSpec(weight_decay=0.1))
    assert decayed == [*SEED_KINDS, "weight_decay"]
    assert rosetta.kinds_of(ModelSpec(), TrainSpec(lr_warmup=1)) == [*SEED_KINDS, "lr_schedule"]


def test_one_framework_per_package() -> None:
    names = rosetta.default_frameworks()
    packages = [registry.get(name).package for name in names]
    every = {info.package for info in registry.frameworks().values()}
    assert len(packages) == len(set(packages)) == len(every)
    assert set(FOUR) <= set(names)


def test_every_package_lists_the_seed_kinds() -> None:
    for info in registry.frameworks().values():
        listed = importlib.import_module(f"{info.package}.rosetta").SOURCES
        assert set(listed) <= set(rosetta.KINDS), info.package
        for kind in [*SEED_KINDS, "dropout", "sgd", "weight_decay", "lr_schedule"]:
            assert listed.get(kind), (info.package, kind)
            assert all(name.count(":") == 1 for name in listed[kind])


def test_an_unreadable_object_is_named_not_fatal(tmp_path: Path, monkeypatch, capsys) -> None:
    assert resolve("numpy_cnn.ops:dense_forward").__name__ == "dense_forward"
    gone = source_entry("numpy_cnn.ops:no_such_layer")
    assert gone["source"] == "" and "AttributeError" in gone["error"]
    compiled = source_entry("numpy:asarray")  # a C function: no Python source
    assert compiled["source"] == "" and compiled["error"]
    module = importlib.import_module("numpy_cnn.rosetta")
    monkeypatch.setitem(module.SOURCES, "flatten", ["numpy_cnn.ops:no_such_layer"])
    status = rosetta.run_rosetta(["numpy"], ModelSpec(), TrainSpec(), tmp_path, in_process=True)
    assert status == 1
    assert "no source for flatten/numpy: numpy_cnn.ops:no_such_layer" in capsys.readouterr().out
    page = (tmp_path / "rosetta.html").read_text()
    assert "<p class='missing'>no source: AttributeError" in page


def test_markdown_fence_outlasts_backticks_in_the_code(tmp_path: Path) -> None:
    code = 'def f():\n    """```python\n    x\n    ```"""\n'
    section = Section("S", details=[Details("s-f", "f <source>", code)])
    write_markdown(tmp_path / "r.md", [], [section])
    write_html(tmp_path / "r.html", [], [section])
    md = (tmp_path / "r.md").read_text()
    assert "<details><summary>f &lt;source&gt;</summary>\n\n````python\n" in md
    assert md.count("````") == 2
    assert (
        "<details id='s-f'><summary>f &lt;source&gt;</summary><pre><code>def f():"
        in (tmp_path / "r.html").read_text()
    )
