"""pytorch_cnn.network: how the spec's padding becomes PyTorch's, and what network_of accepts.
(Shapes, weights and numbers of the network are the contract suite's, tests/contract.)"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cnn_common.spec import ConvBlock, DenseLayer, ModelSpec, layers  # noqa: E402
from pytorch_cnn.network import CNN, network_of, to_nchw  # noqa: E402


def test_same_padding_is_asymmetric_where_tensorflow_places_it() -> None:
    # even kernel, stride 1, 'same': TensorFlow pads 1 before and 2 after (asymmetric)
    spec = ModelSpec(
        conv=(
            ConvBlock(filters=4, kernel_size=4, padding="same"),
            ConvBlock(filters=6, pool_size=0),
        ),
        dense=(DenseLayer(units=16),),
    )
    net = CNN(spec)
    assert net.conv1.explicit_pad == (1, 2, 1, 2)  # left, right, top, bottom: the extra after
    assert layers(spec)[0].output_shape == (28, 28, 4)
    assert net.conv1(torch.zeros(2, 1, 28, 28)).shape == (2, 4, 28, 28)
    # symmetric padding (and none) goes to nn.Conv2d itself
    assert net.conv2.explicit_pad is None and net.conv2.padding == (0, 0)
    odd = CNN(ModelSpec(conv=(ConvBlock(filters=2, kernel_size=5, padding="same"),)))
    assert odd.conv1.explicit_pad is None and odd.conv1.padding == (2, 2)


def test_network_of_takes_the_network_or_a_module_holding_it() -> None:
    net = CNN(ModelSpec())
    holder = torch.nn.Module()
    holder.model = net
    assert network_of(net) is net and network_of(holder) is net
    with pytest.raises(TypeError, match="expected a CNN"):
        network_of(torch.nn.Linear(2, 2))


def test_to_nchw_transposes_and_casts() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # (N, H, W, C)
    t = to_nchw(x, "float64")
    assert t.shape == (2, 5, 3, 4) and t.dtype == torch.float64 and t.is_contiguous()
    assert float(t[1, 4, 2, 3]) == float(x[1, 2, 3, 4])


def test_to_nchw_copies_a_read_only_buffer_without_a_warning() -> None:
    """One-channel images read from bytes (the explorer's) are already contiguous as NCHW:
    the tensor must not share their read-only buffer."""
    x = np.frombuffer(np.arange(2 * 3 * 4, dtype=np.float32).tobytes(), np.float32)
    x = x.reshape(2, 3, 4, 1)  # (N, H, W, 1), read-only
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "not writable" UserWarning would raise
        t = to_nchw(x)
    t[0, 0, 0, 0] = -1.0  # the tensor's own memory
    assert float(x[0, 0, 0, 0]) == 0.0
