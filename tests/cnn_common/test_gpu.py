"""TensorFloat-32 and deterministic kernels (``cnn_common.gpu``): the spec's fields, each
library's switches set to them, each framework's declaration, and the topics "not applicable"
on a CPU. The switches are set on this CPU-only machine (each library accepts them without a
GPU); what they do on a GPU is ``benchmarks/gpu_checks.py``'s to check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_common import gpu
from cnn_common.conventions import GPU_TOPICS, native_specs
from cnn_common.errors import SpecError, UserError
from cnn_common.framework import native_settings, not_native_here
from cnn_common.spec import TrainSpec, spec_from_dict
from compare.ablate.arms import plan_arms
from compare.run.native import native_line
from keras_cnn.framework import KERAS, KERAS_JAX, KERAS_TORCH
from lightning_cnn.framework import FRAMEWORK as LIGHTNING
from numpy_cnn.framework import FRAMEWORK as NUMPY
from pytorch_cnn.framework import FRAMEWORK as PYTORCH
from tests.contract.families import FAMILIES

RESNET = FAMILIES["resnet_small"]
CPU = "not applicable on a CPU: it computes float32 in float32, deterministically"


def test_the_spec_states_both_and_refuses_other_values() -> None:
    assert (TrainSpec().tf32, TrainSpec().deterministic) == ("off", True)
    assert TrainSpec(tf32="conv", deterministic=False).tf32 == "conv"
    with pytest.raises(SpecError, match="tf32 must be one of \\['off', 'conv', 'all'\\]"):
        spec_from_dict({"train": {"tf32": "half"}})
    with pytest.raises(SpecError, match="deterministic must be true or false, got 'yes'"):
        spec_from_dict({"train": {"deterministic": "yes"}})


def test_each_framework_declares_its_librarys_own() -> None:
    own = {
        info.name: (info.conventions["tf32"].fields["tf32"],
                    info.conventions["deterministic"].fields["deterministic"])
        for info in (PYTORCH, LIGHTNING, KERAS, KERAS_TORCH, KERAS_JAX)
    }  # fmt: skip
    assert own == {
        "pytorch": ("conv", False),
        "lightning": ("conv", False),
        "keras": ("all", False),
        "keras-torch": ("conv", False),
        "keras-jax": ("all", False),
    }
    assert not set(GPU_TOPICS) & set(NUMPY.conventions)  # NumPy has no GPU
    assert [info.name for info in (PYTORCH, KERAS, KERAS_JAX) if info.deterministic_at_start] == [
        "keras-jax"
    ]


def test_on_a_cpu_both_topics_are_not_applicable_and_on_a_gpu_they_run() -> None:
    train = TrainSpec()
    for info in (PYTORCH, KERAS, NUMPY):
        for topic in GPU_TOPICS:
            assert not_native_here(info, topic, RESNET, train) == CPU
    assert not_native_here(PYTORCH, "tf32", RESNET, train, gpu=True) == ""
    assert not_native_here(KERAS, "deterministic", RESNET, train, gpu=True) == ""
    assert not_native_here(NUMPY, "tf32", RESNET, train, gpu=True) == (
        "numpy has no TensorFloat-32 of its own"
    )
    assert "a process started with --xla_gpu_deterministic_ops=false" in not_native_here(
        KERAS_JAX, "deterministic", RESNET, train, gpu=True
    )
    float64 = TrainSpec(dtype="float64")
    assert not_native_here(PYTORCH, "tf32", RESNET, float64, gpu=True) == (
        "not applicable: TensorFloat-32 rounds float32 only, the run is float64"
    )
    # The spec's own value is the framework's: nothing to hand back.
    assert not_native_here(KERAS, "tf32", RESNET, TrainSpec(tf32="all"), gpu=True) == (
        "keras's own TensorFloat-32 is the spec's"
    )


def test_a_native_run_trains_the_frameworks_own_settings() -> None:
    _, train = native_specs(PYTORCH.conventions, GPU_TOPICS, RESNET, TrainSpec(), 10)
    assert (train.tf32, train.deterministic) == ("conv", False)
    _, native, skipped = native_settings(KERAS, GPU_TOPICS, RESNET, TrainSpec(), gpu=True)
    assert native == ("tf32", "deterministic") and not skipped
    plan = native_settings(KERAS, GPU_TOPICS, RESNET, TrainSpec())
    assert native_line("keras", plan) == (
        "keras: native nothing; not applicable on a CPU: tf32, deterministic"
    )


def test_the_ablation_runs_both_factors_on_a_gpu_only() -> None:
    names, factors = ("pytorch", "keras-jax"), ("tf32", "deterministic")
    arms = {(a.framework, a.factor): a for a in plan_arms(names, factors, RESNET, TrainSpec(), 2)}
    assert all(
        arms[name, f].why == CPU and not arms[name, f].runs for name in names for f in factors
    )
    on_gpu = plan_arms(names, factors, RESNET, TrainSpec(), 2, gpu=True)
    runs = {(a.framework, a.factor): a.runs for a in on_gpu}
    assert runs == {
        ("pytorch", "baseline"): True,
        ("pytorch", "tf32"): True,
        ("pytorch", "deterministic"): True,
        ("keras-jax", "baseline"): True,
        ("keras-jax", "tf32"): True,
        ("keras-jax", "deterministic"): False,  # XLA's flag is the process's
    }


def test_gpu_here_reads_the_drivers_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu, "NVIDIA_GPUS", tmp_path / "gpus")
    assert not gpu.gpu_here()  # no driver
    (tmp_path / "gpus" / "0000:01:00.0").mkdir(parents=True)
    assert gpu.gpu_here() and gpu.gpu_here("gpu")
    assert not gpu.gpu_here("cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not gpu.gpu_here()


def test_torchs_switches_follow_the_spec() -> None:
    torch = pytest.importorskip("torch")
    backends = torch.backends
    saved = (
        backends.cudnn.conv.fp32_precision,
        backends.cuda.matmul.fp32_precision,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        for mode, conv, matmul in (("off", "ieee", "ieee"), ("conv", "tf32", "ieee"),
                                   ("all", "tf32", "tf32")):  # fmt: skip
            for deterministic in (True, False):
                gpu.set_torch(TrainSpec(tf32=mode, deterministic=deterministic))
                assert backends.cudnn.conv.fp32_precision == conv
                assert backends.cuda.matmul.fp32_precision == matmul
                assert torch.are_deterministic_algorithms_enabled() is deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        backends.cudnn.conv.fp32_precision, backends.cuda.matmul.fp32_precision = saved[:2]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def test_tensorflow_and_jax_have_one_tf32_switch() -> None:
    for setter, library in ((gpu.set_tensorflow, "TensorFlow"), (gpu.set_jax, "JAX")):
        with pytest.raises(UserError, match=f"{library} cannot use TensorFloat-32 in conv"):
            setter(TrainSpec(tf32="conv"))


# Each library's switches, set and read back in a process of its own (its state is global).
CHILD = """
import dataclasses, json, sys
from cnn_common import gpu
from cnn_common.errors import UserError
from cnn_common.spec import TrainSpec
library = sys.argv[1]
found = []
for tf32, deterministic in (("all", True), ("off", False), ("off", True)):
    try:
        gpu.SETTERS[library](TrainSpec(tf32=tf32, deterministic=deterministic))
    except UserError as exc:
        found.append(str(exc).splitlines()[0])
        continue
    if library == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.framework import config
        found.append([tf.config.experimental.tensor_float_32_execution_enabled(),
                      config.is_op_determinism_enabled()])
    else:
        import jax
        found.append(jax.config.jax_default_matmul_precision)
print(json.dumps(found))
"""


def child_answer(library: str, env: dict[str, str]) -> list:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, library],
        capture_output=True, text=True, timeout=300, env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_tensorflows_switches_follow_the_spec() -> None:
    pytest.importorskip("tensorflow")
    assert child_answer("tensorflow", {}) == [[True, True], [False, False], [False, True]]


def test_jax_sets_its_precision_and_refuses_a_flag_it_cannot_change() -> None:
    pytest.importorskip("jax")
    flag = f"--{gpu.XLA_FLAG}"
    refused = (
        f"the spec asks for deterministic: false, but this process's XLA started with {flag}=true"
    )
    assert child_answer("jax", {"XLA_FLAGS": f"{flag}=true"}) == [
        "tensorfloat32",
        refused,
        "float32",
    ]
    started_false = child_answer("jax", {"XLA_FLAGS": f"{flag}=false"})
    assert (
        started_false[1] == "float32"
        and "started with --xla_gpu_deterministic_ops=false" in (started_false[0])
    )


def test_the_xla_flag_is_read_and_set_once(monkeypatch: pytest.MonkeyPatch) -> None:
    flag = f"--{gpu.XLA_FLAG}"
    assert not gpu.xla_deterministic("")
    assert gpu.xla_deterministic(f"--xla_cpu_x=1 {flag}=true")
    assert gpu.xla_deterministic(flag)  # a bare boolean flag is true
    assert not gpu.xla_deterministic(f"{flag}=true {flag}=false")  # the last one counts
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    gpu.start_xla_deterministic()
    assert os.environ["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x {flag}=true"
    monkeypatch.setenv("XLA_FLAGS", f"{flag}=false")
    gpu.start_xla_deterministic()  # a process started for the other value keeps it
    assert os.environ["XLA_FLAGS"] == f"{flag}=false"
