"""Training batches as tensors: the shared batch order and augmentation, NCHW, built once.

Both the plain PyTorch loop (``pytorch_cnn.training``) and Lightning's data module take their
batches from ``BatchSource.batch``, so they feed the model bit-identical tensors: comparing
the two compares what Lightning adds, not two ways of slicing arrays.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import BatchSampler, RandomSampler

from cnn_common.batches import augment_batch
from cnn_common.seeds import int_seed
from cnn_common.spec import TrainSpec
from pytorch_cnn.network import to_nchw


def native_order_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """PyTorch's own shuffling of epoch ``epoch``: the batches a ``DataLoader(shuffle=True)``
    draws (``RandomSampler`` cut by ``BatchSampler``), from a torch generator seeded by the
    ``native_order`` stream, so a run with the native order is still reproducible."""
    generator = torch.Generator().manual_seed(int_seed(seed, "native_order", epoch))
    sampler = BatchSampler(RandomSampler(range(n), generator=generator), batch_size, False)
    return [np.asarray(batch, dtype=np.int64) for batch in sampler]


def dropout_seed(seed: int, epoch: int) -> int:
    """The torch seed set at the start of ``epoch`` when the model has dropout.

    Seeding per epoch makes dropout masks depend on (seed, epoch) only, so a run resumed from
    an epoch's checkpoint draws the same masks as an uninterrupted one.
    """
    return int_seed(seed, "dropout", epoch)


class BatchSource:
    """A training set cut into the shared batches.

    Args:
        x: training images ``(N, H, W, C)``, floats in [0, 1].
        y: labels ``(N,)``, class indices.
        train_spec: supplies ``dtype``, ``seed`` and ``augment_shift``.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, train_spec: TrainSpec) -> None:
        self.train_spec = train_spec
        # The augmentation works on NHWC NumPy batches; without it, slicing the tensor
        # converted once is all a batch costs.
        self.x_nhwc = x if train_spec.augment_shift else None
        self.x = to_nchw(x, train_spec.dtype)  # (N, C, H, W)
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64))  # (N,)

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, epoch: int, step: int, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``step`` of ``epoch`` (0-based, its place in the epoch's global list).

        Returns ``x: (B, C, H, W)`` and ``y: (B,)`` for the indices ``idx: (B,)``.
        """
        rows = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        spec = self.train_spec
        if self.x_nhwc is None:
            xb = self.x[rows]  # (B, C, H, W), contiguous
        else:
            shifted = augment_batch(self.x_nhwc[idx], spec.augment_shift, spec.seed, epoch, step)
            xb = to_nchw(shifted, spec.dtype)
        return xb, self.y[rows]
