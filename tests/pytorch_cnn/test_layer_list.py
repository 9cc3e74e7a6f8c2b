"""pytorch_cnn on the layer list: the example families build and every layer's output follows
``layers(spec)``; batchnorm's running update in both momentum conventions and both variance
storages against numbers worked by hand (float64); the running statistics through
get/set_weights and save/load; ``loss_and_grads`` leaves them and the modes as they were, one
``train_steps`` step updates them; the block form keeps its names and initial draws. (Every
family against the float64 reference is the contract suite's: tests/contract/test_families.py.)
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pytorch_cnn  # noqa: E402
from cnn_common.data import Data  # noqa: E402
from cnn_common.errors import SpecError  # noqa: E402
from cnn_common.results import WEIGHTS_FILE  # noqa: E402
from cnn_common.spec import (  # noqa: E402
    IMAGE,
    LayerSpec,
    ModelSpec,
    TrainSpec,
    feature_map_layers,
    layers,
    param_count,
    state_count,
    trainable_shapes,
    weight_shapes,
)
from cnn_common.spec_files import load_spec  # noqa: E402
from cnn_common.weights import init_weights, load_weights, weights_digest  # noqa: E402
from pytorch_cnn.network import SpecBatchNorm  # noqa: E402
from tests.reference import reference_running_statistics  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAMILIES = {
    name: load_spec(EXAMPLES / f"{name}.yaml")[0]
    for name in ("resnet_small", "vgg_small", "mobilenet_small")
}
LABELS = np.array([3, 1, 4, 1])


def images(spec: ModelSpec, n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *spec.input_shape)).astype(np.float32)


def random_weights(spec: ModelSpec, seed: int = 1) -> dict[str, np.ndarray]:
    """Glorot kernels, and every vector away from its initial value (running variances
    positive), so a tensor in the wrong place shows."""
    rng = np.random.default_rng(seed)
    weights = init_weights(spec, seed, "float64")
    for name, value in weights.items():
        if not name.endswith(".kernel"):
            weights[name] = value + rng.uniform(0.1, 0.5, value.shape)
    return weights


def running(net: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v for k, v in pytorch_cnn.get_weights(net).items() if ".moving_" in k}


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_builds_and_every_output_follows_layers(name: str) -> None:
    spec = FAMILIES[name]
    net = pytorch_cnn.build(spec)
    assert sum(p.numel() for p in net.parameters()) == param_count(spec)
    assert sum(b.numel() for b in net.buffers()) == state_count(spec) > 0
    names = [layer.name for layer in layers(spec)]
    logits, outputs = net.outputs(torch.zeros(2, 1, 28, 28), [IMAGE, *names])
    assert logits.shape == (2, spec.num_classes)
    for layer in layers(spec):
        shape = layer.output_shape
        expected = (2, shape[2], shape[0], shape[1]) if len(shape) == 3 else (2, *shape)
        assert tuple(outputs[layer.name].shape) == expected, layer.name
    weights = pytorch_cnn.get_weights(net)
    assert {k: v.shape for k, v in weights.items()} == weight_shapes(spec)
    assert list(weights) == list(weight_shapes(spec))
    maps = pytorch_cnn.feature_maps(net, images(spec, 2))
    assert list(maps) == feature_map_layers(spec)


# One batchnorm on a (1, 2, 2) image, n = 2 images x 2 pixels = 4 values a channel:
# channel 0 holds 1, 2, 3, 4 (mean 2.5, biased variance 1.25, unbiased 5/3), channel 1
# holds 0, 0, 2, 2 (mean 1, biased 1, unbiased 4/3). From mean 0 and variance 1, m = 0.25:
HAND = {
    # "torch": new = (1 - m) * old + m * batch; "keras": new = m * old + (1 - m) * batch
    ("torch", "unbiased"): ([0.625, 0.25], [0.75 + 0.25 * 5 / 3, 0.75 + 0.25 * 4 / 3]),
    ("torch", "biased"): ([0.625, 0.25], [1.0625, 1.0]),
    ("keras", "unbiased"): ([1.875, 0.75], [0.25 + 0.75 * 5 / 3, 0.25 + 0.75 * 4 / 3]),
    ("keras", "biased"): ([1.875, 0.75], [1.1875, 1.0]),
}


@pytest.mark.parametrize(("convention", "variance"), HAND)
def test_batchnorm_follows_the_spec_in_both_modes(convention: str, variance: str) -> None:
    bn = LayerSpec(
        "batchnorm", momentum=0.25, epsilon=1e-3, momentum_convention=convention, variance=variance
    )
    spec = ModelSpec(input_shape=(1, 2, 2), layers=(bn, LayerSpec("flatten")), num_classes=2)
    net = pytorch_cnn.build(spec, "float64")
    module = net.bn1
    assert isinstance(module, SpecBatchNorm)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([2.0, 0.5]))
        module.bias.copy_(torch.tensor([1.0, -1.0]))
    x = torch.tensor([[[[1.0, 2.0]], [[0.0, 0.0]]], [[[3.0, 4.0]], [[2.0, 2.0]]]])  # (2, 2, 1, 2)
    x = x.double()
    net.train()
    y = module(x)
    # training: the batch's mean and biased variance
    expected_y = [
        [2.0 * (v - 2.5) / math.sqrt(1.25 + 1e-3) + 1.0 for v in (1.0, 2.0, 3.0, 4.0)],
        [0.5 * (v - 1.0) / math.sqrt(1.0 + 1e-3) - 1.0 for v in (0.0, 0.0, 2.0, 2.0)],
    ]
    got_y = y.permute(1, 0, 2, 3).reshape(2, 4).detach().numpy()
    np.testing.assert_allclose(got_y, expected_y, rtol=1e-14, atol=1e-14)
    mean, var = HAND[convention, variance]
    stats = running(net)
    np.testing.assert_allclose(stats["bn1.moving_mean"], mean, rtol=1e-14)
    np.testing.assert_allclose(stats["bn1.moving_variance"], var, rtol=1e-14)
    # evaluation: the running statistics, nothing updated
    net.eval()
    y = module(x).permute(1, 0, 2, 3).reshape(2, 4).detach().numpy()
    gamma, beta = np.array([[2.0], [0.5]]), np.array([[1.0], [-1.0]])
    xs = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 2.0, 2.0]])
    centred = (xs - np.array(mean)[:, None]) / np.sqrt(np.array(var)[:, None] + 1e-3)
    np.testing.assert_allclose(y, gamma * centred + beta, rtol=1e-14, atol=1e-14)
    assert all(np.array_equal(running(net)[k], v) for k, v in stats.items())


@pytest.mark.parametrize("name", FAMILIES)
def test_weights_round_trip_with_the_running_statistics(name: str, tmp_path: Path) -> None:
    spec = FAMILIES[name]
    weights = random_weights(spec)
    net = pytorch_cnn.build(spec, "float64")
    pytorch_cnn.set_weights(net, weights)
    got = pytorch_cnn.get_weights(net)
    assert list(got) == list(weights)
    for tensor, value in weights.items():
        np.testing.assert_array_equal(got[tensor], value, err_msg=tensor)
    bn = next(layer.name for layer in layers(spec) if layer.kind == "batchnorm")
    state = net.state_dict()
    np.testing.assert_array_equal(state[f"{bn}.running_var"], weights[f"{bn}.moving_variance"])
    np.testing.assert_array_equal(state[f"{bn}.weight"], weights[f"{bn}.gamma"])
    path = tmp_path / "model.pt"
    pytorch_cnn.save(net, path)
    loaded = pytorch_cnn.load(path)
    for tensor, value in pytorch_cnn.get_weights(loaded).items():
        np.testing.assert_array_equal(value, weights[tensor], err_msg=tensor)
    x = images(spec)
    np.testing.assert_array_equal(
        pytorch_cnn.predict_logits(loaded, x), pytorch_cnn.predict_logits(net, x)
    )


def test_loss_and_grads_normalises_with_the_batch_and_leaves_the_running_statistics() -> None:
    spec = FAMILIES["resnet_small"]
    net = pytorch_cnn.build(spec, "float64")
    pytorch_cnn.set_weights(net, random_weights(spec))
    before = running(net)
    net.train()
    x = images(spec)
    loss, grads = pytorch_cnn.loss_and_grads(net, x, LABELS)
    assert {k: v.shape for k, v in grads.items()} == trainable_shapes(spec)
    assert all(np.array_equal(running(net)[k], v) for k, v in before.items())
    assert net.training and all(m.training for m in net.modules())
    assert all(m.update_running for m in net.modules() if isinstance(m, SpecBatchNorm))
    # the batch's statistics, not the running ones: evaluation mode gives another loss
    eval_loss = pytorch_cnn.evaluate(net, x, LABELS)[0]
    assert abs(loss - eval_loss) > 1e-3
    net.eval()
    assert pytorch_cnn.loss_and_grads(net, x, LABELS)[0] == pytest.approx(loss, abs=1e-12)
    assert not net.training


@pytest.mark.parametrize("name", FAMILIES)
def test_one_train_step_updates_the_running_statistics_as_the_spec_says(name: str) -> None:
    spec = FAMILIES[name]
    weights = random_weights(spec)
    net = pytorch_cnn.build(spec, "float64")
    pytorch_cnn.set_weights(net, weights)
    x = images(spec)
    pytorch_cnn.train_steps(net, TrainSpec(dtype="float64"), [(x, LABELS)])
    expected = reference_running_statistics(spec, weights, x)
    got = running(net)
    assert set(got) == set(expected)
    for tensor, value in expected.items():
        assert not np.allclose(value, weights[tensor]), tensor
        np.testing.assert_allclose(got[tensor], value, rtol=1e-10, atol=1e-12, err_msg=tensor)


def test_the_block_form_keeps_its_names_and_initial_draws() -> None:
    net = pytorch_cnn.build(ModelSpec(), seed=0)
    assert list(net.state_dict()) == [
        "conv1.weight",
        "conv1.bias",
        "conv2.weight",
        "conv2.bias",
        "dense1.weight",
        "dense1.bias",
        "logits.weight",
        "logits.bias",
    ]
    # PyTorch's default initialisers drawn from the seed, as the nn.Sequential network drew them
    assert weights_digest(pytorch_cnn.get_weights(net)) == "815330635ec02aea"


def test_a_layer_named_like_a_module_attribute_is_refused() -> None:
    spec = ModelSpec(
        layers=(LayerSpec("conv", name="forward", filters=2), LayerSpec("global_avgpool"))
    )
    with pytest.raises(SpecError, match="forward"):
        pytorch_cnn.build(spec)


def test_a_resumed_run_continues_with_the_running_statistics(tmp_path: Path) -> None:
    """One epoch, then resumed to two from its checkpoint: the same weights and running
    statistics as two epochs in one go."""
    spec = ModelSpec(
        input_shape=(8, 8, 1),
        num_classes=3,
        layers=(
            LayerSpec("conv", filters=4, kernel_size=3, bias=False),
            LayerSpec("batchnorm", momentum=0.8, momentum_convention="keras", variance="biased"),
            LayerSpec("residual", filters=6, stride=2),
            LayerSpec("global_avgpool"),
        ),
    )
    rng = np.random.default_rng(0)
    x, y = rng.random((48, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 48)
    data = Data("random", x, y, x[:16], y[:16], x[16:32], y[16:32], ("a", "b", "c"))
    two = TrainSpec(batch_size=16, epochs=2, learning_rate=0.01)
    kwargs = {"init_weights": init_weights(spec), "progress": False, "device": "cpu"}
    pytorch_cnn.train(spec, two, data, tmp_path / "whole", **kwargs)
    pytorch_cnn.train(spec, dataclasses.replace(two, epochs=1), data, tmp_path / "cut", **kwargs)
    resumed = pytorch_cnn.train(spec, two, data, tmp_path / "cut", resume=True, **kwargs)
    assert resumed.extra["resumed_from_epoch"] == 1
    whole = load_weights(tmp_path / "whole" / WEIGHTS_FILE)[0]
    for tensor, value in load_weights(tmp_path / "cut" / WEIGHTS_FILE)[0].items():
        np.testing.assert_array_equal(value, whole[tensor], err_msg=tensor)
    assert not np.allclose(whole["bn1.moving_mean"], 0.0)
