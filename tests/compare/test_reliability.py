"""The reliability findings, each through what a user runs: the sizes a --subset run states,
shareable report files, a failure table that stays one row per failure, each run's own peak
memory, TensorFlow's start-up lines kept off the terminal, a missing framework named with its
install command, and parity and bench keeping the results already in their --out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_common.data import Data, subset
from cnn_common.events import Event, Step
from cnn_common.results import RESULT_FILE, RunResult
from cnn_common.spec import ModelSpec, TrainSpec
from compare.engine.layout import run_dir

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TENSORFLOW_START_UP = ("oneDNN custom operations are on", "absl::InitializeLog", "port.cc")


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        capture_output=True,
        text=True,
        env=kwargs.pop("env", env()),
        timeout=600,
        **kwargs,
    )


def test_a_subset_run_states_its_sizes_and_writes_files_others_can_read(
    tmp_path: Path, data_dir: Path
) -> None:
    """--subset cuts the training images only; the report says how many of each were used;
    every file is 0644 under umask 022 (not the 0600 of a temporary file)."""
    out = tmp_path / "out"
    done = run(
        "cnn-compare", "run", "--frameworks", "numpy", "--subset", "300", "--epochs", "1",
        "--quiet", "--out", str(out), preexec_fn=lambda: os.umask(0o022),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = RunResult.from_json(run_dir(out, "numpy", 0) / RESULT_FILE)
    assert record.sizes == {"train": 300, "val": 5000, "test": 10000}
    assert len(record.predictions) == 10000
    report = (out / "report.md").read_text()
    assert "300 training / 5,000 validation / 10,000 test images" in report[:600]
    assert "peak memory is the largest resident set size" in report
    files = [out / name for name in ("report.html", "report.md", "results.json", "history.csv")]
    files += [*(out / "figures").glob("*.png"), run_dir(out, "numpy", 0) / RESULT_FILE]
    assert len(files) > 6
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o644, (path, oct(path.stat().st_mode))


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="needs a machine without a GPU")
def test_a_real_failure_keeps_the_markdown_failure_table_one_row_each(
    tmp_path: Path, data_dir: Path
) -> None:
    out = tmp_path / "out"
    done = run(
        "cnn-compare", "run", "--frameworks", "numpy,pytorch", "--device", "gpu",
        "--subset", "100", "--eval-subset", "100", "--epochs", "1", "--quiet", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    lines = (out / "report.md").read_text().splitlines()
    head = lines.index("| framework | seed | kind | why |")
    table = lines[head : lines.index("", head)]
    assert len(table) == 2 + 2, table  # head, rule and one row per failure
    for framework, row in zip(("numpy", "pytorch"), table[2:], strict=True):
        assert row.startswith(f"| {framework} | 0 | user | ") and row.endswith(" |"), row
        assert "<br>  fix: use --device cpu" in row, row  # the message's second line


def test_each_run_records_its_own_peak_memory(mnist: Data, tmp_path: Path) -> None:
    """Two runs in one process (as --in-process has them): the second's peak is its own, not
    the first's 512 MiB."""
    import numpy_cnn

    data = subset(mnist, 300, 100, 100)
    train = TrainSpec(epochs=1, batch_size=100)
    hog: list[np.ndarray] = []

    def allocate(event: Event) -> None:
        if isinstance(event, Step) and not hog:
            hog.append(np.ones(64 * 2**20))  # 512 MiB, written

    first = numpy_cnn.train(ModelSpec(), train, data, tmp_path / "a", on_event=allocate)
    hog.clear()
    second = numpy_cnn.train(ModelSpec(), train, data, tmp_path / "b", progress=False)
    if sys.platform.startswith("linux"):
        assert first.peak_memory_scope == second.peak_memory_scope == "run"
        assert first.peak_memory_mb > 512
        assert second.peak_memory_mb < first.peak_memory_mb - 400, (first, second)
    else:
        assert second.peak_memory_scope == "process"


def test_the_report_marks_a_peak_counted_from_the_process_start() -> None:
    from compare.report import tables
    from compare.report.collect import Collected

    def record(scope: str) -> RunResult:
        run = RunResult("numpy", "numpy", "mnist", {}, {}, "shared", "cpu", {}, 0)
        run.epoch_times, run.peak_memory_mb, run.peak_memory_scope = [1.0], 300.0, scope
        return run

    column = tables.RESULTS_HEAD.index("peak memory (MiB)")
    for scope, cell in (("run", "300"), ("process", "300 (process)")):
        _, rows = tables.results_table(tables.summary_rows(Collected({}, runs=[record(scope)])))
        assert rows[0][column] == cell


# ----------------------------------------------------------------------------- TensorFlow


def test_keras_cnn_prints_none_of_tensorflows_start_up_lines(
    tmp_path: Path, data_dir: Path
) -> None:
    done = run(
        "keras-cnn", "train", "--quiet", "--subset", "300", "--eval-subset", "100",
        "--epochs", "1", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for line in TENSORFLOW_START_UP:
        assert line not in done.stdout + done.stderr


def test_a_keras_worker_log_holds_none_of_tensorflows_start_up_lines(
    tmp_path: Path, data_dir: Path
) -> None:
    out = tmp_path / "out"
    done = run(
        "cnn-compare", "run", "--frameworks", "keras", "--subset", "300", "--eval-subset",
        "100", "--epochs", "1", "--quiet", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    log = (run_dir(out, "keras", 0) / "log.txt").read_text()
    for line in TENSORFLOW_START_UP:
        assert line not in log + done.stdout + done.stderr


def test_only_the_import_is_silenced(capfd: pytest.CaptureFixture[str]) -> None:
    from keras_cnn import native_stderr_silenced

    with pytest.raises(ImportError, match="a real error"), native_stderr_silenced():
        os.write(2, b"start-up noise\n")
        raise ImportError("a real error")
    os.write(2, b"after the import\n")
    err = capfd.readouterr().err
    assert "start-up noise" not in err and "after the import" in err


# ----------------------------------------------------------------------------- not installed


@pytest.mark.parametrize(
    ("command", "blocked", "install"),
    [
        (["lightning-cnn", "train"], "lightning", 'pip install -e ".[lightning]"'),
        (["lightning-cnn", "fit"], "lightning", 'pip install -e ".[lightning]"'),
        (["pytorch-cnn", "train"], "torch", 'pip install -e ".[torch]"'),
        (["keras-cnn", "train"], "keras", 'pip install -e ".[keras]"'),
        (["keras-cnn", "train", "--backend", "jax"], "jax", 'pip install -e ".[keras,jax]"'),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_framework_that_is_not_installed_is_named_with_its_install_command(
    command: list[str], blocked: str, install: str, tmp_path: Path
) -> None:
    # A module set to None in sys.modules cannot be imported, and find_spec says it is not
    # there: what a machine without it sees, however the interpreter found it.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import sys\nsys.modules[{blocked!r}] = None\n")
    done = run(
        *command, "--out", str(tmp_path / "out"),
        env=env(PYTHONPATH=f"{site}{os.pathsep}{REPO}"),
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert f"needs the '{blocked}' package, which is not installed" in done.stderr
    assert f"fix: {install}" in done.stderr
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- parity, bench


def test_parity_and_bench_say_where_they_wrote_and_keep_what_is_there(
    tmp_path: Path, data_dir: Path
) -> None:
    parity = ["cnn-compare", "parity", "--frameworks", "numpy", "--steps", "1", "--out"]
    out = tmp_path / "parity"
    first = run(*parity, str(out))
    assert first.returncode == 0, first.stderr
    assert f"wrote {out / 'parity.json'}" in first.stdout
    before = (out / "parity.json").read_bytes()
    again = run(*parity, str(out))
    assert again.returncode == 2 and "already holds a parity result" in again.stderr
    assert (out / "parity.json").read_bytes() == before
    assert run(*parity, str(out), "--overwrite").returncode == 0

    bench = ["cnn-compare", "bench", "--frameworks", "numpy", "--train-images", "256"]
    bench += ["--infer-images", "200", "--phase-steps", "0"]
    out = tmp_path / "bench"
    first = run(*bench, "--processes", "1", "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert f"wrote {out / 'bench.json'}" in first.stdout
    before = (out / "bench.json").read_bytes()
    again = run(*bench, "--processes", "1", "--out", str(out))
    assert again.returncode == 2 and "already holds a bench result" in again.stderr
    assert (out / "bench.json").read_bytes() == before
    assert json.loads(before)["rows"][0]["framework"] == "pytorch"
