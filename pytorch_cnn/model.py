"""The contract (``docs/design.md``) for the PyTorch CNN: build, predict, weights, gradients, files.

Every function takes the plain ``CNN`` or a module that holds one as ``.model`` (Lightning's
``LitCNN`` reuses them all). Images cross the contract as NHWC NumPy arrays and become NCHW
tensors here; weights cross in the canonical layout and are converted by
``cnn_common.weights.to_torch_layout`` / ``from_torch_layout``, the one place that converts;
batchnorm's running statistics travel with them. ``predict``, ``evaluate``, ``feature_maps``
and ``layer_trace`` run the network in evaluation mode, ``loss_and_grads`` and
``train_steps`` in training mode (``docs/design.md``: the contract in the two modes).
"""

from __future__ import annotations

import io
from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnn_common.data import check_images
from cnn_common.errors import DataError
from cnn_common.files import atomic_write_bytes
from cnn_common.metrics import readouts
from cnn_common.seeds import int_seed
from cnn_common.spec import (
    IMAGE,
    ModelSpec,
    TrainSpec,
    feature_map_layers,
    native_pads,
    spec_from_dict,
    spec_to_dict,
)
from cnn_common.spec import layers as spec_layers
from cnn_common.weights import Weights, check_weights, from_torch_layout, to_torch_layout
from pytorch_cnn.network import CNN, TORCH_DTYPES, batch_statistics, network_of, to_nchw
from pytorch_cnn.optim import make_optimizer, set_learning_rate

# Images per forward pass in evaluate/predict: a small batch's activations stay in the caches
# (docs/design.md has the measured effect).
EVAL_BATCH = 128


def build(
    spec: ModelSpec, dtype: str = "float32", *, seed: int = 0, native_padding: bool = False
) -> CNN:
    """A ``CNN`` for ``spec`` in ``dtype`` with PyTorch's default initialisers
    (Kaiming-uniform(a=sqrt 5) weights, uniform biases), drawn from the ``init`` stream of
    ``seed`` without touching the global torch generator. ``native_padding`` pads 'same'
    layers as PyTorch code usually does (``cnn_common.spec.native_pads``), not as the spec."""
    pads = native_pads(spec, "torch") if native_padding else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int_seed(seed, "init"))
        return CNN(spec, pads).to(TORCH_DTYPES[dtype])


def _param(net: CNN) -> torch.Tensor:
    return next(net.parameters())


def _inputs(net: CNN, x: object) -> torch.Tensor:
    """Checked NHWC images -> an NCHW tensor of the network's dtype on its device."""
    images = check_images(x, net.spec.input_shape)
    param = _param(net)
    return to_nchw(images, param.dtype).to(param.device)


def _labels(net: CNN, y: object) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y, dtype=np.int64), device=_param(net).device)


def _eval_outputs(
    net: CNN, images: torch.Tensor, keep: Collection[str] = ()
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits ``(N, K)`` of ``images: (N, C, H, W)`` and the outputs of the layers in
    ``keep`` (``CNN.outputs``), in evaluation mode (running statistics, no dropout),
    ``EVAL_BATCH`` images at a time; the network's mode comes back afterwards."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            starts = range(0, len(images), EVAL_BATCH)
            chunks = [net.outputs(images[i : i + EVAL_BATCH], keep) for i in starts]
    finally:
        net.train(was_training)
    if not chunks:
        return torch.zeros((0, net.spec.num_classes), dtype=_param(net).dtype), {}
    logits = torch.cat([chunk[0] for chunk in chunks])
    return logits, {name: torch.cat([chunk[1][name] for chunk in chunks]) for name in keep}


def predict_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Raw logits ``(N, K)`` for images ``x: (N, H, W, C)``, in evaluation mode (running
    statistics, no dropout)."""
    net = network_of(model)
    return _eval_outputs(net, _inputs(net, x))[0].cpu().numpy()


predict, evaluate = readouts(predict_logits)


def feature_maps(model: nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    """The maps of ``cnn_common.spec.feature_map_layers`` (every conv after its activation,
    pooling, batchnorm and add), NHWC float32 ``(N, H, W, C)``, in that order, in evaluation
    mode: exactly what the forward pass computed."""
    net = network_of(model)
    names = feature_map_layers(net.spec)
    _, maps = _eval_outputs(net, _inputs(net, x), names)
    return {name: maps[name].permute(0, 2, 3, 1).float().cpu().numpy() for name in names}


def _to_numpy(tensors: dict[str, torch.Tensor]) -> Weights:
    return {name: value.detach().cpu().numpy().copy() for name, value in tensors.items()}


def get_weights(model: nn.Module) -> Weights:
    """Every tensor in the canonical layout, in ``cnn_common.spec.weight_shapes`` order:
    ``{conv1.kernel: (KH, KW, C, F), ..., bn1.gamma, bn1.beta, bn1.moving_mean,
    bn1.moving_variance: (C,), ...}``."""
    net = network_of(model)
    state = net.state_dict()
    torch_weights = _to_numpy({name: state[t] for name, t in net.tensor_names.items()})
    return from_torch_layout(torch_weights, net.spec)


@torch.no_grad()
def set_weights(model: nn.Module, weights: Weights) -> None:
    """Load canonical weights, running statistics included (cast to the model's dtype); a
    mismatch raises ``WeightsError`` (a ``ValueError``) naming the tensor."""
    net = network_of(model)
    check_weights(net.spec, weights)
    torch_weights = to_torch_layout(weights, net.spec)
    tensors = {**dict(net.named_parameters()), **dict(net.named_buffers())}
    for name, value in torch_weights.items():
        tensor = tensors[net.tensor_names[name]]
        tensor.copy_(torch.from_numpy(np.asarray(value)).to(tensor.dtype))


def _canonical_grads(net: CNN, names: list[str], grads: tuple[torch.Tensor, ...]) -> Weights:
    """Gradients of the parameters ``names`` (canonical) -> the canonical layout."""
    torch_grads = {n: g.cpu().numpy() for n, g in zip(names, grads, strict=True)}
    return from_torch_layout(torch_grads, net.spec)


def loss_and_grads(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
    """Mean cross-entropy of the batch and the gradients of the trained tensors
    (``cnn_common.spec.trainable_shapes``: not a frozen layer's), canonical layout; in
    training mode (batchnorm normalises with the batch's statistics, a frozen "inference" one
    with its running statistics) with dropout off, the running statistics left unchanged."""
    net = network_of(model)
    images, labels = _inputs(net, x), _labels(net, y)
    params = dict(net.canonical_parameters())
    with batch_statistics(net):
        loss = F.cross_entropy(net(images), labels)
        grads = torch.autograd.grad(loss, list(params.values()))
    return loss.item(), _canonical_grads(net, list(params), grads)


def _flattened(spec: ModelSpec) -> dict[str, tuple[int, int, int]]:
    """The layers whose output is a flattened map in PyTorch's C, H, W order (flatten, and
    what passes its vector on element by element), each with that map's ``(C, H, W)``."""
    found: dict[str, tuple[int, int, int]] = {}
    for layer in spec_layers(spec):
        if layer.kind == "flatten":
            h, w, c = layer.input_shape
            found[layer.name] = (c, h, w)
        elif layer.kind in ("dropout", "activation", "add") and layer.inputs[0] in found:
            found[layer.name] = found[layer.inputs[0]]
    return found


def _canonical(value: torch.Tensor, flat_chw: tuple[int, int, int] | None) -> np.ndarray:
    """A layer's tensor in the canonical layout: NCHW -> NHWC; a flattened map (C, H, W
    order, ``flat_chw`` its (C, H, W)) -> H, W, C order; anything else as it is."""
    value = value.detach().cpu()
    if value.ndim == 4:
        return value.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    if flat_chw is not None:
        return (
            value.reshape(len(value), *flat_chw).permute(0, 2, 3, 1).reshape(len(value), -1).numpy()
        )
    return value.numpy()


def layer_trace(model: nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """In evaluation mode: every layer's output (``forward/<layer>``), the gradient of the
    mean loss with respect to the tensor each layer reads first (``grad_input/<layer>``: the
    total gradient of that tensor, summed over every layer that reads it, frozen layers
    included), to every trained tensor (``grad/<tensor>``: not a frozen layer's) and the loss
    (``loss``); canonical layout (NHWC maps, flattened maps in H, W, C order)."""
    net = network_of(model)
    images, labels = _inputs(net, x).requires_grad_(), _labels(net, y)
    unrolled = spec_layers(net.spec)
    flat = _flattened(net.spec)
    sources = list(dict.fromkeys(layer.inputs[0] for layer in unrolled))
    params = dict(net.canonical_parameters())
    was_training = net.training
    net.eval()
    try:
        logits, outputs = net.outputs(images, [IMAGE, *net.layer_kinds])
        loss = F.cross_entropy(logits, labels)
        grads = torch.autograd.grad(loss, [*(outputs[s] for s in sources), *params.values()])
    finally:
        net.train(was_training)
    grad_of = dict(zip(sources, grads[: len(sources)], strict=True))
    return {
        "loss": np.asarray(loss.item(), dtype=np.float64),
        **{f"forward/{n}": _canonical(outputs[n], flat.get(n)) for n in net.layer_kinds},
        **{
            f"grad_input/{layer.name}": _canonical(
                grad_of[layer.inputs[0]], flat.get(layer.inputs[0])
            )
            for layer in unrolled
        },
        **{
            f"grad/{n}": v
            for n, v in _canonical_grads(net, list(params), grads[len(sources) :]).items()
        },
    }


def train_steps(
    model: nn.Module,
    train_spec: TrainSpec,
    batches: list[tuple[np.ndarray, np.ndarray]],
    steps_per_epoch: int | None = None,
) -> list[float]:
    """One optimiser step per ``(x: (B, H, W, C), y: (B,))`` batch from a fresh optimiser,
    in training mode: batchnorm normalises with each batch's statistics and folds them into
    its running ones (a frozen "inference" one runs as in evaluation), dropout is on; the
    optimiser holds the trained tensors only, so a frozen layer's stay as they are. The
    batches are the first updates of a run of ``steps_per_epoch`` updates an epoch (default:
    they are one epoch): step ``s`` has the learning rate
    ``cnn_common.schedule.learning_rate(train_spec, s, steps_per_epoch)``.

    The weights are updated in place; returns the loss of each step (before its update).
    """
    net = network_of(model)
    optimizer = make_optimizer(net.canonical_parameters(), train_spec)
    per_epoch = steps_per_epoch or len(batches)
    net.train()
    losses = []
    for step, (x, y) in enumerate(batches):
        images, labels = _inputs(net, x), _labels(net, y)
        optimizer.zero_grad()
        loss = F.cross_entropy(net(images), labels)
        loss.backward()
        set_learning_rate(optimizer, train_spec, step, per_epoch)
        optimizer.step()
        losses.append(loss.item())
    return losses


def save(model: nn.Module, path: str | Path) -> None:
    """Write the network as a PyTorch file: its ``state_dict`` (PyTorch's layout) with the
    spec and dtype, which ``load`` (and ``torch.load(weights_only=True)``) reads; atomic."""
    net = network_of(model)
    dtype = "float64" if _param(net).dtype == torch.float64 else "float32"
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"state_dict": state, "spec": spec_to_dict(net.spec), "dtype": dtype}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load(path: str | Path) -> CNN:
    """Read a file written by ``save``, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist", "check the path")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        spec = spec_from_dict(saved["spec"])[0]
        net = CNN(spec).to(TORCH_DTYPES[saved["dtype"]])
        net.load_state_dict(saved["state_dict"])
    except Exception as exc:  # noqa: BLE001 - any failure to read means a bad file
        raise DataError(
            f"{path} is not a pytorch_cnn model file ({type(exc).__name__}: {exc})",
            "write it with pytorch_cnn.save (or `cnn-compare convert`)",
        ) from None
    return net
