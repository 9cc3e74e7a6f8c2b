"""pytorch_cnn with frozen layers (``trainable: false``): their parameters have
``requires_grad`` off and are in no optimiser, through float64 and save/load; a frozen
"inference" batchnorm trains as it evaluates, a "batch" one as any other; ``loss_and_grads``
and ``layer_trace`` give the trained tensors' gradients only, the gradient still reaching the
image through the frozen layers; ``pytorch-cnn train --spec`` leaves the frozen tensors
bit-identical while the others move, its checkpoint holding every tensor. (The float64
reference's numbers are the contract suite's: tests/contract/test_frozen.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pytorch_cnn  # noqa: E402
from cnn_common.results import WEIGHTS_FILE  # noqa: E402
from cnn_common.spec import (  # noqa: E402
    LayerSpec,
    ModelSpec,
    TrainSpec,
    layers,
    trainable_shapes,
    weight_shapes,
)
from cnn_common.spec_files import load_spec  # noqa: E402
from cnn_common.weights import init_weights, load_weights  # noqa: E402
from pytorch_cnn.__main__ import main  # noqa: E402
from pytorch_cnn.network import network_of  # noqa: E402
from pytorch_cnn.optim import make_optimizer  # noqa: E402


def frozen_spec(frozen_batchnorm: str = "batch") -> ModelSpec:
    """A frozen conv, batchnorm, residual block (with its projection) and dense layer, and
    trained ones between them."""
    return ModelSpec(
        input_shape=(8, 8, 2),
        num_classes=3,
        layers=(
            LayerSpec("conv", name="c1", filters=4, padding="same", trainable=False),
            LayerSpec("batchnorm", name="bn1", trainable=False, frozen_batchnorm=frozen_batchnorm),
            LayerSpec("activation", name="relu1", activation="relu"),
            LayerSpec("residual", name="r1", filters=6, stride=2, trainable=False),
            LayerSpec("conv", name="c2", filters=4, kernel_size=1),
            LayerSpec("batchnorm", name="bn2"),
            LayerSpec("global_avgpool", name="gap"),
            LayerSpec("dense", name="d1", units=5, activation="relu", trainable=False),
            LayerSpec("dense", name="d2", units=4, activation="tanh"),
        ),
    )


SPEC = frozen_spec()
# the trainable tensors of the frozen layers
FROZEN_PARAMS = [name for layer in layers(SPEC) if not layer.trainable for name in layer.params]
LABELS = np.array([0, 2, 1, 1])


def images(spec: ModelSpec, n: int = 4, seed: int = 0, dtype: str = "float64") -> np.ndarray:
    return np.random.default_rng(seed).random((n, *spec.input_shape)).astype(dtype)


def shifted_weights(spec: ModelSpec, dtype: str = "float64") -> dict[str, np.ndarray]:
    """Glorot kernels and every vector away from its initial value (variances positive)."""
    rng = np.random.default_rng(1)
    weights = init_weights(spec, 1, dtype)
    for name, value in weights.items():
        if not name.endswith(".kernel"):
            weights[name] = (value + rng.uniform(0.1, 0.5, value.shape)).astype(dtype)
    return weights


def requires_grad(net: torch.nn.Module) -> dict[str, bool]:
    """Canonical parameter name -> its ``requires_grad``."""
    net = network_of(net)
    params = dict(net.named_parameters())
    return {name: params[t].requires_grad for name, t in net.tensor_names.items() if t in params}


def test_the_spec_freezes_every_kind_of_trainable_layer() -> None:
    assert {"c1.kernel", "bn1.gamma", "r1_conv2.kernel", "r1_projbn.beta", "d1.bias"} <= set(
        FROZEN_PARAMS
    )
    assert {"c2.kernel", "bn2.gamma", "d2.kernel", "logits.bias"} <= set(trainable_shapes(SPEC))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_frozen_parameters_have_no_requires_grad_and_survive_save_and_load(
    dtype: str, tmp_path: Path
) -> None:
    net = pytorch_cnn.build(SPEC, dtype)
    params = [name for name in weight_shapes(SPEC) if ".moving_" not in name]
    expected = {name: name not in FROZEN_PARAMS for name in params}
    assert requires_grad(net) == expected
    assert [name for name, _ in net.canonical_parameters()] == list(trainable_shapes(SPEC))
    # every tensor still travels: weights, state dict and the model file
    assert list(pytorch_cnn.get_weights(net)) == list(weight_shapes(SPEC))
    path = tmp_path / "model.pt"
    pytorch_cnn.save(net, path)
    loaded = pytorch_cnn.load(path)
    assert requires_grad(loaded) == expected
    for name, value in pytorch_cnn.get_weights(net).items():
        np.testing.assert_array_equal(pytorch_cnn.get_weights(loaded)[name], value, err_msg=name)


@pytest.mark.parametrize(
    "train_spec",
    [
        TrainSpec(weight_decay=0.1),
        TrainSpec(weight_decay=0.1, weight_decay_on="kernels", epsilon_convention="keras"),
        TrainSpec(weight_decay=0.1, weight_decay_convention="decoupled"),
        TrainSpec(optimizer="sgd", weight_decay=0.1, weight_decay_convention="decoupled"),
        TrainSpec(optimizer="sgd"),
    ],
    ids=["adam-l2", "keras-adam-kernels", "adamw", "decoupled-sgd", "sgd"],
)
def test_the_optimiser_holds_the_trained_parameters_only(train_spec: TrainSpec) -> None:
    net = pytorch_cnn.build(SPEC)
    optimizer = make_optimizer(net.canonical_parameters(), train_spec)
    held = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(held) == sorted(id(p) for _, p in net.canonical_parameters())
    assert len(held) == len(trainable_shapes(SPEC))


def test_a_frozen_inference_batchnorm_trains_as_it_evaluates() -> None:
    """``frozen_batchnorm: inference``: in training mode the running statistics normalise
    and stay, and the gradient to the input is evaluation's; "batch", or a trained layer
    whatever its frozen_batchnorm says, normalises with the batch and updates them."""
    x = torch.from_numpy(images(SPEC).transpose(0, 3, 1, 2).copy()) * 3.0  # (N, C, H, W)

    def run(trainable: bool, frozen_batchnorm: str, training: bool):  # noqa: ANN202
        spec = ModelSpec(
            input_shape=(8, 8, 2),
            num_classes=3,
            layers=(
                LayerSpec("batchnorm", name="bn", trainable=trainable,
                          frozen_batchnorm=frozen_batchnorm),
                LayerSpec("flatten"),
            ),
        )  # fmt: skip
        net = pytorch_cnn.build(spec, "float64")
        pytorch_cnn.set_weights(net, shifted_weights(spec))
        before = {k: v.clone() for k, v in net.state_dict().items()}
        net.train(training)
        xi = x.clone().requires_grad_()
        y = net.bn(xi)
        (grad,) = torch.autograd.grad((y * y.detach().cos()).sum(), xi)
        moved = not torch.equal(net.bn.running_mean, before["bn.running_mean"])
        return y.detach(), grad, moved

    evaluated, eval_grad, moved = run(False, "inference", training=False)
    assert not moved
    trained, train_grad, moved = run(False, "inference", training=True)
    assert not moved
    assert torch.equal(trained, evaluated) and torch.equal(train_grad, eval_grad)
    for trainable, mode in ((False, "batch"), (True, "inference"), (True, "batch")):
        y, grad, moved = run(trainable, mode, training=True)
        assert moved and not torch.allclose(y, evaluated), (trainable, mode)
        assert not torch.allclose(grad, eval_grad), (trainable, mode)


@pytest.mark.parametrize("frozen_batchnorm", ["batch", "inference"])
def test_gradients_are_the_trained_tensors_and_reach_the_image_through_frozen_layers(
    frozen_batchnorm: str,
) -> None:
    spec = frozen_spec(frozen_batchnorm)
    net = pytorch_cnn.build(spec, "float64")
    weights = shifted_weights(spec)
    pytorch_cnn.set_weights(net, weights)
    x = images(spec)
    _, grads = pytorch_cnn.loss_and_grads(net, x, LABELS)
    assert {k: v.shape for k, v in grads.items()} == trainable_shapes(spec)
    trace = pytorch_cnn.layer_trace(net, x, LABELS)
    grad_of = {k[len("grad/") :] for k in trace if k.startswith("grad/")}
    assert grad_of == set(trainable_shapes(spec))
    assert {k[len("grad_input/") :] for k in trace if k.startswith("grad_input/")} == {
        layer.name for layer in layers(spec)
    }
    assert np.abs(trace["grad_input/c1"]).max() > 0  # the image's, through every frozen layer
    # neither query moved a tensor, the running statistics included
    for name, value in pytorch_cnn.get_weights(net).items():
        np.testing.assert_array_equal(value, weights[name], err_msg=name)


@pytest.mark.parametrize("frozen_batchnorm", ["batch", "inference"])
def test_train_steps_leave_the_frozen_tensors_and_move_the_others(frozen_batchnorm: str) -> None:
    spec = frozen_spec(frozen_batchnorm)
    net = pytorch_cnn.build(spec)
    before = pytorch_cnn.get_weights(net)
    batches = [(images(spec, seed=s, dtype="float32"), LABELS) for s in range(3)]
    pytorch_cnn.train_steps(net, TrainSpec(learning_rate=0.01, weight_decay=0.1), batches)
    after = pytorch_cnn.get_weights(net)
    for name in FROZEN_PARAMS:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    for name in trainable_shapes(spec):
        assert not np.array_equal(after[name], before[name]), name
    bn1_moved = not np.array_equal(after["bn1.moving_mean"], before["bn1.moving_mean"])
    assert bn1_moved == (frozen_batchnorm == "batch")
    # a frozen residual's batchnorms follow its frozen_batchnorm ("batch"): they update
    assert not np.array_equal(after["r1_bn1.moving_mean"], before["r1_bn1.moving_mean"])


SPEC_FILE = """\
model:
  layers:
    - {kind: conv, name: c1, filters: 4, padding: same, trainable: false}
    - {kind: batchnorm, name: bn1, trainable: false, frozen_batchnorm: inference}
    - {kind: activation, activation: relu}
    - {kind: maxpool}
    - {kind: conv, name: c2, filters: 8}
    - {kind: batchnorm, name: bn2}
    - {kind: activation, activation: relu}
    - {kind: global_avgpool}
    - {kind: dense, name: d1, units: 16, activation: relu, trainable: false}
train:
  batch_size: 100
  learning_rate: 0.01
  weight_decay: 0.01
"""


def test_cli_train_leaves_the_frozen_tensors_bit_identical(data_dir: Path, tmp_path: Path) -> None:
    spec_path, out = tmp_path / "frozen.yaml", tmp_path / "run"
    spec_path.write_text(SPEC_FILE)
    spec, train_spec = load_spec(spec_path)
    args = ["train", "--spec", str(spec_path), "--subset", "600", "--eval-subset", "200"]
    args += ["--epochs", "1", "--data-dir", str(data_dir), "--out", str(out), "--quiet"]
    assert main(args) == 0
    initial = pytorch_cnn.get_weights(pytorch_cnn.build(spec, seed=train_spec.seed))
    final, _, _ = load_weights(out / WEIGHTS_FILE)
    frozen = [name for layer in layers(spec) if not layer.trainable for name in layer.tensors]
    assert sorted(frozen) == sorted(["c1.kernel", "c1.bias", "bn1.gamma", "bn1.beta",
                                     "bn1.moving_mean", "bn1.moving_variance", "d1.kernel",
                                     "d1.bias"])  # fmt: skip
    for name in frozen:  # bn1 runs as in evaluation: its running statistics stay too
        np.testing.assert_array_equal(final[name], initial[name], err_msg=name)
    for name in trainable_shapes(spec):
        assert not np.array_equal(final[name], initial[name]), name
    # the checkpoint holds every tensor; the optimiser's state the trained ones only
    state = torch.load(out / "checkpoints" / "epoch-0001.pt", weights_only=True)
    net = pytorch_cnn.build(spec)
    assert sorted(state["model"]) == sorted(net.state_dict())
    assert len(state["optimizer"]["state"]) == len(trainable_shapes(spec))
