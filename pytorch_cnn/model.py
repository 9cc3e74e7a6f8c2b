"""The contract (``docs/design.md``) for the PyTorch CNN: build, predict, weights, gradients, files.

Every function takes the plain ``CNN`` or a module that holds one as ``.model`` (Lightning's
``LitCNN`` reuses them all). Images cross the contract as NHWC NumPy arrays and become NCHW
tensors here; weights cross in the canonical layout and are converted by
``cnn_common.weights.to_torch_layout`` / ``from_torch_layout``, the one place that converts.
"""

from __future__ import annotations

import io
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
    ModelSpec,
    TrainSpec,
    native_pads,
    spec_from_dict,
    spec_to_dict,
)
from cnn_common.spec import layers as spec_layers
from cnn_common.weights import Weights, check_weights, from_torch_layout, to_torch_layout
from pytorch_cnn.network import CNN, TORCH_DTYPES, network_of, to_nchw
from pytorch_cnn.optim import make_optimizer

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


@torch.no_grad()
def _eval_logits(net: CNN, images: torch.Tensor) -> torch.Tensor:
    """Logits ``(N, K)`` of ``images: (N, C, H, W)`` in eval mode, ``EVAL_BATCH`` at a time."""
    was_training = net.training
    net.eval()
    try:
        chunks = [net(images[i : i + EVAL_BATCH]) for i in range(0, len(images), EVAL_BATCH)]
    finally:
        net.train(was_training)
    if not chunks:
        return torch.zeros((0, net.spec.num_classes), dtype=_param(net).dtype)
    return torch.cat(chunks)


def predict_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Raw logits ``(N, K)`` for images ``x: (N, H, W, C)``, in eval mode (no dropout)."""
    net = network_of(model)
    return _eval_logits(net, _inputs(net, x)).cpu().numpy()


predict, evaluate = readouts(predict_logits)


def feature_maps(model: nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of every conv (after its activation) and pool layer, NHWC float32, in order.

    Read with forward hooks, so the maps are exactly what the forward pass computed.
    """
    net = network_of(model)
    images = _inputs(net, x)
    maps: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, module in net.named_children():
        if net.layer_kinds[name] in ("conv", "pool"):
            maps[name] = []

            def hook(_m: nn.Module, _i: object, out: torch.Tensor, name: str = name) -> None:
                maps[name].append(out.permute(0, 2, 3, 1).float().cpu())  # (N, H, W, C)

            handles.append(module.register_forward_hook(hook))
    try:
        _eval_logits(net, images)
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(parts).numpy() for name, parts in maps.items()}


def _torch_name(name: str) -> str:
    """Canonical tensor name -> parameter name: ``conv1.kernel`` -> ``conv1.weight``."""
    return name.replace(".kernel", ".weight")


def _canonical_name(name: str) -> str:
    return name.replace(".weight", ".kernel")


def get_weights(model: nn.Module) -> Weights:
    """The weights in the canonical layout: ``{conv1.kernel: (KH, KW, C, F), ...}``."""
    net = network_of(model)
    torch_weights = {
        _canonical_name(name): param.detach().cpu().numpy().copy()
        for name, param in net.named_parameters()
    }
    return from_torch_layout(torch_weights, net.spec)


@torch.no_grad()
def set_weights(model: nn.Module, weights: Weights) -> None:
    """Load canonical weights (cast to the model's dtype); a mismatch raises ``WeightsError``
    (a ``ValueError``) naming the tensor."""
    net = network_of(model)
    check_weights(net.spec, weights)
    torch_weights = to_torch_layout(weights, net.spec)
    params = dict(net.named_parameters())
    for name, value in torch_weights.items():
        param = params[_torch_name(name)]
        param.copy_(torch.from_numpy(np.asarray(value)).to(param.dtype))


def loss_and_grads(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
    """Mean cross-entropy of the batch and its gradients, canonical layout, dropout off."""
    net = network_of(model)
    images, labels = _inputs(net, x), _labels(net, y)
    was_training = net.training
    net.eval()
    try:
        params = dict(net.named_parameters())
        loss = F.cross_entropy(net(images), labels)
        grads = torch.autograd.grad(loss, list(params.values()))
    finally:
        net.train(was_training)
    torch_grads = {
        _canonical_name(name): grad.cpu().numpy() for name, grad in zip(params, grads, strict=True)
    }
    return loss.item(), from_torch_layout(torch_grads, net.spec)


def _canonical(value: torch.Tensor, flat_chw: tuple[int, int, int] | None) -> np.ndarray:
    """A layer's tensor in the canonical layout: NCHW -> NHWC; a flattened map (C, H, W
    order) -> H, W, C order (``flat_chw`` is its (C, H, W)); anything else as it is."""
    value = value.detach().cpu()
    if value.ndim == 4:
        return value.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    if flat_chw is not None and value.ndim == 2 and value.shape[1] == np.prod(flat_chw):
        return (
            value.reshape(len(value), *flat_chw).permute(0, 2, 3, 1).reshape(len(value), -1).numpy()
        )
    return value.numpy()


def layer_trace(model: nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output (``forward/<layer>``), the gradient of the mean loss with respect
    to every layer's input (``grad_input/<layer>``) and to every weight (``grad/<tensor>``),
    and the loss (``loss``), dropout off; canonical layout (NHWC maps, H, W, C flatten)."""
    net = network_of(model)
    images, labels = _inputs(net, x).requires_grad_(), _labels(net, y)
    h, w, c = next(layer.input_shape for layer in spec_layers(net.spec) if layer.kind == "flatten")
    flat = (c, h, w)
    was_training = net.training
    net.eval()
    try:
        inputs: dict[str, torch.Tensor] = {}
        outputs: dict[str, torch.Tensor] = {}
        out = images
        for name, module in net.named_children():
            inputs[name] = out
            out = module(out)
            outputs[name] = out
        loss = F.cross_entropy(out, labels)
        params = dict(net.named_parameters())
        grads = torch.autograd.grad(loss, [*inputs.values(), *params.values()])
    finally:
        net.train(was_training)
    grad_inputs, grad_params = grads[: len(inputs)], grads[len(inputs) :]
    torch_grads = {
        _canonical_name(n): g.cpu().numpy() for n, g in zip(params, grad_params, strict=True)
    }
    return {
        "loss": np.asarray(loss.item(), dtype=np.float64),
        **{f"forward/{n}": _canonical(v, flat) for n, v in outputs.items()},
        **{
            f"grad_input/{n}": _canonical(g, flat) for n, g in zip(inputs, grad_inputs, strict=True)
        },
        **{f"grad/{n}": v for n, v in from_torch_layout(torch_grads, net.spec).items()},
    }


def train_steps(
    model: nn.Module, train_spec: TrainSpec, batches: list[tuple[np.ndarray, np.ndarray]]
) -> list[float]:
    """One optimiser step per ``(x: (B, H, W, C), y: (B,))`` batch from a fresh optimiser.

    The weights are updated in place; returns the loss of each step (before its update).
    """
    net = network_of(model)
    optimizer = make_optimizer(net.parameters(), train_spec)
    net.train()
    losses = []
    for x, y in batches:
        images, labels = _inputs(net, x), _labels(net, y)
        optimizer.zero_grad()
        loss = F.cross_entropy(net(images), labels)
        loss.backward()
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
