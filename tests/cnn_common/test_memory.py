"""The memory estimate: every part counted as stated, each framework's way of holding a batch,
the machine's available memory read (container limits included), and a run that cannot fit
refused before it allocates, by every trainer's command line and by ``cnn-compare run``."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_common import memory
from cnn_common.errors import UserError
from cnn_common.machine import thread_setting
from cnn_common.memory import available_memory, check_fits, estimate, framework_estimate, human
from cnn_common.spec import ConvBlock, ModelSpec, TrainSpec, param_count, state_count
from cnn_common.spec_files import load_spec
from cnn_common.trainer import TrainCall, contract_train
from compare.engine import registry
from compare.run.command import RunOptions, memory_needs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BIN = Path(sys.executable).parent
SEED_PARAMS = 46_730
# Values each seed-model image leaves for the backward pass: conv1 24x24x16, pool1 12x12x16,
# conv2 8x8x32, pool2 4x4x32, flatten 512, dense1 64, logits 10.
SEED_KEPT = 9216 + 2304 + 2048 + 512 + 512 + 64 + 10
HUGE = ["--set", "conv.0.filters=200000"]  # about 224 GiB in NumPy: no machine here has it


def test_the_seed_models_estimate_counts_every_part() -> None:
    need = estimate(ModelSpec(), TrainSpec(), images=70_000)
    assert need.parameters == need.gradients == SEED_PARAMS * 4
    assert need.optimizer == 2 * SEED_PARAMS * 4  # Adam's two moments
    assert need.activations == need.activation_gradients == SEED_KEPT * 128 * 4
    assert need.data == 70_000 * 28 * 28 * 4
    assert (
        need.total
        == need.model + need.data
        == sum((need.parameters, need.gradients, need.optimizer, 2 * need.activations, need.data))
    )
    assert need.describe().startswith(f"about {human(need.total)} (parameters 182.5 KiB")


def test_dtype_optimiser_and_batch_change_what_they_should() -> None:
    base = estimate(ModelSpec(), TrainSpec())
    double = estimate(ModelSpec(), TrainSpec(dtype="float64"))
    assert double.total == 2 * base.total
    assert estimate(ModelSpec(), TrainSpec(optimizer="sgd", momentum=0.0)).optimizer == 0
    assert estimate(ModelSpec(), TrainSpec(optimizer="sgd")).optimizer == SEED_PARAMS * 4
    assert estimate(ModelSpec(), TrainSpec(batch_size=64)).activations == base.activations // 2


def test_numpy_keeps_a_piece_per_thread_with_its_im2col_rows() -> None:
    numpy_fw, pytorch_fw = registry.get("numpy"), registry.get("pytorch")
    im2col = 24 * 24 * (5 * 5 * 1 + 1) + 8 * 8 * (5 * 5 * 16 + 1)  # conv1, conv2 rows
    for threads in (1, 2, 8):
        at_once = min(128, numpy_fw.activation_images * threads)
        need = framework_estimate(numpy_fw, ModelSpec(), TrainSpec(), 0, threads)
        assert need.activations == (SEED_KEPT + im2col) * at_once * 4
    autograd = framework_estimate(pytorch_fw, ModelSpec(), TrainSpec(), 0, 2)
    assert autograd.activations == SEED_KEPT * 128 * 4  # the whole batch, no im2col


def test_available_memory_reads_meminfo_and_a_containers_limit(tmp_path: Path) -> None:
    meminfo, cgroup = tmp_path / "meminfo", tmp_path / "cgroup"
    cgroup.mkdir()
    meminfo.write_text("MemTotal:  4000 kB\nMemFree:  100 kB\nMemAvailable:  3000 kB\n")
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory(meminfo, cgroup) == 3000 * 1024
    (cgroup / "memory.max").write_text(f"{2000 * 1024}\n")
    (cgroup / "memory.current").write_text(f"{500 * 1024}\n")
    assert available_memory(meminfo, cgroup) == 1500 * 1024  # the container leaves less
    (cgroup / "memory.max").write_text(f"{9000 * 1024}\n")
    assert available_memory(meminfo, cgroup) == 3000 * 1024  # the machine leaves less
    # Neither readable: the C library's count of free pages, where it has one.
    fallback = available_memory(tmp_path / "none", tmp_path / "none")
    assert fallback is None or fallback > 0
    assert (available_memory() or 1) > 0  # this machine


def test_a_need_over_what_is_available_is_refused_with_the_estimate_and_the_fix() -> None:
    assert check_fits(10**6, "a run", "about 1 MiB", available=10**9) == 10**9
    with pytest.raises(UserError) as refused:
        check_fits(10**12, "a numpy run", "about 931.3 GiB (...)", available=2 * 1024**3)
    assert "a numpy run needs about 931.3 GiB (...), more than the 2.0 GiB" in str(refused.value)
    assert "smaller --batch-size" in refused.value.hint and "float32" not in refused.value.hint
    with pytest.raises(UserError) as refused:
        check_fits(10**12, "a run", "about", available=1, dtype="float64")
    assert "--dtype float32" in refused.value.hint


def limited(gib: int = 6):  # noqa: ANN201 - a preexec_fn
    """A child's address space capped at ``gib`` GiB: were the refusal to fail, the child would
    get a MemoryError instead of filling the machine."""

    def cap() -> None:
        limit = gib * 1024**3
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return cap


def refused(command: list[str], data_dir: Path) -> subprocess.CompletedProcess:
    # NumPy's estimate grows with its threads (each holds a shard's activations): two, stated
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300, preexec_fn=limited()
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert "training needs about" in done.stderr or "run needs about" in done.stderr
    assert "more than the" in done.stderr and "fix: use a smaller model" in done.stderr
    return done


def test_a_trainer_refuses_a_spec_that_cannot_fit_before_it_allocates(
    tmp_path: Path, data_dir: Path
) -> None:
    out = tmp_path / "huge"
    command = [str(BIN / "numpy-cnn"), "train", *HUGE, "--subset", "500", "--epochs", "1"]
    done = refused([*command, "--out", str(out)], data_dir)
    assert "numpy training needs about 223.7 GiB" in done.stderr
    assert not out.exists()  # nothing written


def test_cnn_compare_run_refuses_it_before_any_worker_starts(
    tmp_path: Path, data_dir: Path
) -> None:
    out = tmp_path / "huge"
    command = [sys.executable, "-m", "compare", "run", *HUGE, "--subset", "500"]
    done = refused([*command, "--out", str(out), "--quiet"], data_dir)
    assert "a numpy run needs about" in done.stderr
    assert not out.exists()


def test_a_trainer_and_cnn_compare_run_show_the_estimate(tmp_path: Path, data_dir: Path) -> None:
    small = ["--subset", "200", "--eval-subset", "100", "--epochs", "1"]
    command = [str(BIN / "numpy-cnn"), "train", *small, "--out", str(tmp_path / "n")]
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "numpy_cnn: memory (estimate) about " in done.stdout and " available" in done.stdout
    options = RunOptions(
        frameworks=("numpy", "pytorch"),
        model_spec=ModelSpec(conv=(ConvBlock(filters=8), ConvBlock(filters=16))),
        train_spec=TrainSpec(),
        data_dir=str(data_dir),
        subset=1000,
        eval_subset=100,
        out=tmp_path / "run",
    )
    line = memory_needs(options)
    images = 1000 + 100 + 100  # training, validation, test
    spec, cores = options.model_spec, thread_setting()
    needs = {
        name: framework_estimate(registry.get(name), spec, TrainSpec(), images, cores).total
        for name in options.frameworks
    }
    shown = [f"{name} {human(need)}" for name, need in needs.items()]
    assert line.startswith(f"memory (estimate, a run at a time): {shown[0]}, {shown[1]}; ")
    assert line.endswith(" available")


def test_every_train_refuses_before_its_loop_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The trainer skeleton checks before the framework's loop builds anything: a call from
    code (compare's workers, a user's script) is refused as the command lines are."""
    entered = []

    @contract_train(registry.get("pytorch"))
    def train(run: TrainCall) -> None:
        entered.append(run)

    huge = ModelSpec(conv=(ConvBlock(filters=200_000), ConvBlock(filters=32)))
    monkeypatch.setattr(memory, "available_memory", lambda *_: 8 * 1024**3)
    with pytest.raises(UserError, match=r"pytorch training needs about .* more than the 8.0 GiB"):
        train(huge, TrainSpec(), None, tmp_path, progress=False)
    assert entered == []
    train(ModelSpec(), TrainSpec(), None, tmp_path, progress=False)
    assert len(entered) == 1


def test_a_model_with_batchnorm_holds_the_whole_batch_and_counts_its_statistics() -> None:
    model, train = load_spec(EXAMPLES / "resnet_small.yaml")
    pieces = estimate(model, train, 100, activation_images=32, threads=1)
    whole = estimate(model, train, 100)
    assert pieces.activations == whole.activations  # statistics over the whole batch
    assert whole.parameters == (param_count(model) + state_count(model)) * 4
    assert whole.gradients == param_count(model) * 4  # the statistics have no gradient
