"""The yardstick checked on its own: the float64 reference's hand-written backward pass against
central differences of its forward pass (both modes, every layer kind), and its running
statistics against the issue's formulas computed another way (``np.var``)."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_common.spec import LayerSpec, ModelSpec, layers, trainable_shapes
from tests.contract.families import FAMILIES, KINDS, family_weights, frozen_spec, random_images
from tests.reference import (
    numeric_gradient,
    reference_forward,
    reference_gradients,
    reference_logits,
    reference_loss,
    reference_running_statistics,
    sample_indices,
)

SPECS = {
    "kinds": KINDS,
    **FAMILIES,
    "frozen, batch": frozen_spec("batch"),
    "frozen, inference": frozen_spec("inference"),
}


@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
@pytest.mark.parametrize("spec_name", SPECS)
def test_backward_matches_central_differences(spec_name: str, training: bool) -> None:
    spec = SPECS[spec_name]
    weights = family_weights(spec, 1, "float64")
    x = random_images(spec, 3, 1, "float64")
    y = np.array([0, 2, 1])
    loss, grads, input_grads = reference_gradients(spec, weights, x, y, training=training)
    assert loss == reference_loss(spec, weights, x, y, training=training)
    assert {name: g.shape for name, g in grads.items()} == trainable_shapes(spec)
    rng = np.random.default_rng(2)

    def f() -> float:
        return reference_loss(spec, weights, x, y, training=training)

    for name in trainable_shapes(spec):
        indices = sample_indices(weights[name].shape, 3, rng)
        numeric = numeric_gradient(f, weights[name], indices)
        got = np.array([grads[name][i] for i in indices])
        np.testing.assert_allclose(got, numeric, rtol=1e-5, atol=1e-8, err_msg=name)
    first = layers(spec)[0].name
    pixels = sample_indices(x.shape, 8, rng)
    numeric = numeric_gradient(f, x, pixels)
    got = np.array([input_grads[first][i] for i in pixels])
    np.testing.assert_allclose(got, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    ("convention", "variance", "momentum"),
    [("torch", "unbiased", 0.1), ("keras", "biased", 0.99), ("torch", "biased", 0.3)],
)
def test_running_statistics_follow_the_stated_conventions(
    convention: str, variance: str, momentum: float
) -> None:
    spec = ModelSpec(
        input_shape=(5, 5, 2),
        num_classes=2,
        layers=(
            LayerSpec("conv", name="c", filters=3, kernel_size=3),
            LayerSpec(
                "batchnorm",
                name="bn",
                momentum=momentum,
                momentum_convention=convention,
                variance=variance,
            ),
            LayerSpec("global_avgpool"),
        ),
    )
    weights = family_weights(spec, 5, "float64")
    x = random_images(spec, 4, 5, "float64")
    conv = reference_forward(spec, weights, x)["c"].reshape(-1, 3)  # (N*H*W, C)
    batch_mean, batch_var = conv.mean(axis=0), conv.var(axis=0, ddof=variance == "unbiased")
    new = momentum if convention == "torch" else 1 - momentum  # the batch's share
    got = reference_running_statistics(spec, weights, x)
    old_mean, old_var = weights["bn.moving_mean"], weights["bn.moving_variance"]
    np.testing.assert_allclose(got["bn.moving_mean"], (1 - new) * old_mean + new * batch_mean)
    np.testing.assert_allclose(got["bn.moving_variance"], (1 - new) * old_var + new * batch_var)
    assert set(got) == {"bn.moving_mean", "bn.moving_variance"}


def test_evaluation_mode_uses_the_running_statistics() -> None:
    """With the batch's own statistics stored as the running ones (biased variance), the two
    modes agree; with the initial ones (0 and 1) they do not."""
    spec = FAMILIES["vgg_small"]
    weights = family_weights(spec, 6, "float64")
    x = random_images(spec, 4, 6, "float64")
    outputs = reference_forward(spec, weights, x, training=True)
    matched = dict(weights)
    for layer in layers(spec):
        if layer.kind == "batchnorm":
            seen = outputs[layer.inputs[0]]
            matched[f"{layer.name}.moving_mean"] = seen.mean(axis=(0, 1, 2))
            matched[f"{layer.name}.moving_variance"] = seen.var(axis=(0, 1, 2))
    train = reference_logits(spec, weights, x, training=True)
    np.testing.assert_allclose(reference_logits(spec, matched, x), train, rtol=1e-12, atol=1e-12)
    assert np.abs(reference_logits(spec, weights, x) - train).max() > 1e-3


def _torch_forward(spec: ModelSpec, weights: dict[str, np.ndarray], x: np.ndarray, training: bool):
    """The logits and updated running statistics from ``torch.nn.functional``, layer by layer
    (NCHW inside, flattened in H, W, C order): an implementation the reference shares nothing
    with, for the conventions a self-check cannot see (which channels a group reads, what
    PyTorch's batchnorm stores)."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - PyTorch's own alias

    w = {name: torch.tensor(value) for name, value in weights.items()}
    acts = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
    out = {"input": torch.tensor(x).permute(0, 3, 1, 2)}
    stats = {}
    for layer in layers(spec):
        a, name = out[layer.inputs[0]], layer.name
        if layer.kind == "conv":
            (top, bottom), (left, right) = layer.pad
            kernel = w[f"{name}.kernel"].permute(3, 2, 0, 1)  # (F, C/G, KH, KW)
            a = F.conv2d(
                F.pad(a, (left, right, top, bottom)),
                kernel,
                w.get(f"{name}.bias"),
                stride=layer.stride,
                groups=layer.groups,
            )
        elif layer.kind == "batchnorm":
            mean = w[f"{name}.moving_mean"].clone()
            var = w[f"{name}.moving_variance"].clone()
            a = F.batch_norm(
                a,
                mean,
                var,
                weight=w[f"{name}.gamma"],
                bias=w[f"{name}.beta"],
                training=training and layer.batch_statistics,  # a frozen one in eval mode
                momentum=layer.momentum,
                eps=layer.epsilon,
            )
            stats[f"{name}.moving_mean"], stats[f"{name}.moving_variance"] = mean, var
        elif layer.kind == "pool":
            a = F.max_pool2d(a, layer.kernel_size, layer.stride)
        elif layer.kind == "avgpool":
            a = F.avg_pool2d(a, layer.kernel_size, layer.stride)
        elif layer.kind == "global_avgpool":
            a = a.mean(dim=(2, 3))
        elif layer.kind == "flatten":
            a = a.permute(0, 2, 3, 1).reshape(len(a), -1)
        elif layer.kind in ("dense", "logits"):
            a = a @ w[f"{name}.kernel"] + w[f"{name}.bias"]
        elif layer.kind == "add":
            a = a + out[layer.inputs[1]]
        if layer.activation in acts:
            a = acts[layer.activation](a)
        out[name] = a
    logits = out[layers(spec)[-1].name].numpy()
    return logits, {name: value.numpy() for name, value in stats.items()}


@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
@pytest.mark.parametrize("spec_name", SPECS)
def test_forward_and_statistics_match_torch_functional(spec_name: str, training: bool) -> None:
    """Logits in both modes; the running statistics of the layers in PyTorch's convention
    (``(1 - m) * old + m * batch``, the variance unbiased: the spec's default). ``KINDS``'
    Keras-convention layer is held to the formulas by the test above."""
    pytest.importorskip("torch")
    spec = SPECS[spec_name]
    weights = family_weights(spec, 9, "float64")
    x = random_images(spec, 3, 9, "float64")
    logits, stats = _torch_forward(spec, weights, x, training)
    np.testing.assert_allclose(
        reference_logits(spec, weights, x, training=training), logits, rtol=0, atol=1e-12
    )
    if not training:
        return
    ours = reference_running_statistics(spec, weights, x)
    for layer in layers(spec):
        if not layer.batch_statistics or layer.momentum_convention != "torch":
            continue  # not a batchnorm, or one that keeps its statistics, or Keras's
        for stat in ("moving_mean", "moving_variance"):
            key = f"{layer.name}.{stat}"
            np.testing.assert_allclose(ours[key], stats[key], rtol=1e-12, err_msg=key)
