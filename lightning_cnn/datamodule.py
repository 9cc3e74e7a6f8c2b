"""``ImageDataModule``: cnn_common's loader, split, batch order and augmentation for Lightning.

The training loader never shuffles: ``EpochBatchSampler`` yields the batches of
``cnn_common.batches.epoch_batches`` for the epoch Lightning sets with ``set_epoch``, and under
data parallelism (DDP) each process takes its own share through ``shard_batches``. Give the
Trainer ``use_distributed_sampler=False`` so Lightning does not replace the sampler with a
``DistributedSampler``. Batches are ``(x: (B, C, H, W), y: (B,))`` tensors, cut whole from
tensors built once (``BatchSource``), so a step costs no per-image Python work.

``MNISTDataModule`` is the same class under the name it had when MNIST was its only dataset,
kept so that code written against it runs unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cnn_common.batches import epoch_batches, shard_batches, steps_per_epoch
from cnn_common.data import Data, load_dataset, training_data
from cnn_common.spec import TrainSpec
from pytorch_cnn.batching import BatchSource, native_order_batches
from pytorch_cnn.model import EVAL_BATCH

# The arguments of ``ImageDataModule`` that are ``TrainSpec`` fields of the same name.
SPEC_FIELDS = ("batch_size", "seed", "validation_size", "augment_shift", "dtype")

BatchKey = tuple[int, int, np.ndarray]  # (epoch, step in the epoch's global list, indices)


class EpochBatchSampler(Sampler[BatchKey]):
    """This process's share of the shared batch order, one epoch at a time.

    Args:
        n: number of training images.
        batch_size: images per batch (the last batch of an epoch may be shorter).
        seed: the batch-order seed (``TrainSpec.seed``).
        rank: this process's rank under data parallelism.
        world_size: number of processes; each takes batches ``rank, rank + world_size, ...``.
        native_order: PyTorch's own shuffling (``DataLoader(shuffle=True)``'s batches) instead
            of the shared order.

    Yields ``(epoch, step, indices)``: ``step`` is the batch's place in the epoch's global list,
    which seeds its augmentation, so a batch is augmented the same way on any rank.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        native_order: bool = False,
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.order = native_order_batches if native_order else epoch_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each training epoch (0-based), also after a resume."""
        self.epoch = epoch

    def __len__(self) -> int:
        return steps_per_epoch(self.n, self.batch_size, self.world_size)

    def __iter__(self) -> Iterator[BatchKey]:
        batches = self.order(self.n, self.batch_size, self.seed, self.epoch)
        # shard_batches slices any list: sharding the positions keeps each batch's global step.
        steps = shard_batches(list(range(len(batches))), self.rank, self.world_size)
        for step in steps:
            yield self.epoch, step, batches[step]


class SequentialBatchSampler(Sampler[BatchKey]):
    """Evaluation batches in order: ``(0, step, indices)`` over ``range(n)``."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n, self.batch_size = n, batch_size

    def __len__(self) -> int:
        return steps_per_epoch(self.n, self.batch_size) if self.n else 0

    def __iter__(self) -> Iterator[BatchKey]:
        for step, start in enumerate(range(0, self.n, self.batch_size)):
            yield 0, step, np.arange(start, min(start + self.batch_size, self.n))


class BatchDataset(Dataset):
    """A dataset indexed by whole batches: ``dataset[(epoch, step, indices)] -> (x, y)``."""

    def __init__(self, source: BatchSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: BatchKey) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, step, indices = key
        return self.source.batch(epoch, step, indices)


class ImageDataModule(L.LightningDataModule):
    """Any dataset of ``cnn_common.data``'s registry, split and batched as every framework is.

    Also importable as ``MNISTDataModule``, its first name (kept for existing code).

    Args:
        dataset: a registry name: ``mnist``, ``fashion-mnist``.
        data_dir: a folder holding ``<dataset>/<idx files>``; None -> ``$CNN_DATA_DIR``, the
            cache, the layouts other tools leave.
        batch_size: training batch size (``TrainSpec.batch_size``).
        seed: seed of the split and of the batch order (``TrainSpec.seed``).
        validation_size: training images held out for validation.
        augment_shift: random shift of up to this many pixels (0 = no augmentation).
        dtype: float32 | float64, the dtype of the image tensors.
        subset: use only the first ``subset`` training images, for quick runs (the
            validation and test sets stay whole).
        download: let ``prepare_data`` fetch missing files from the mirrors.
        eval_batch_size: batch size of the validation, test and predict loaders (PyTorch's
            ``pytorch_cnn.model.EVAL_BATCH``, whose activations stay in the caches).
        num_workers: DataLoader worker processes (0: batches are cut in the main process,
            which is cheap here).
        native_order: shuffle as ``DataLoader(shuffle=True)`` does, not in the shared order.
    """

    def __init__(
        self,
        dataset: str = "mnist",
        data_dir: str | None = None,
        batch_size: int = 128,
        seed: int = 0,
        validation_size: int = 5000,
        augment_shift: int = 0,
        dtype: str = "float32",
        subset: int | None = None,
        download: bool = True,
        eval_batch_size: int = EVAL_BATCH,
        num_workers: int = 0,
        native_order: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.dataset = dataset
        self.data_dir = data_dir
        # Validated by TrainSpec, whose fields these are.
        self.train_spec = TrainSpec(**{name: self.hparams[name] for name in SPEC_FIELDS})
        self.subset = subset
        self.download = download
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.native_order = native_order
        self.data: Data | None = None
        self._sources: dict[str, BatchSource] = {}

    @classmethod
    def from_data(cls, data: Data, train_spec: TrainSpec, **kwargs: Any) -> ImageDataModule:
        """A data module over an already prepared ``Data`` (nothing is loaded or downloaded)."""
        spec_fields = {name: getattr(train_spec, name) for name in SPEC_FIELDS}
        module = cls(dataset=data.name, download=False, **spec_fields, **kwargs)
        module.data = data
        return module

    def prepare_data(self) -> None:
        """Find or download the files (Lightning calls this on one process per node)."""
        if self.data is None:
            load_dataset(self.dataset, root=self.data_dir, download=self.download)

    def setup(self, stage: str) -> None:
        """Load, split and scale the dataset (never downloads)."""
        if self.data is None:
            self.data = training_data(
                self.dataset, self.train_spec, self.data_dir, self.subset, download=False
            )

    def _source(self, split: str) -> BatchSource:
        """The ``BatchSource`` of ``split`` (train, val, test), built on first use."""
        if split not in self._sources:
            assert self.data is not None, "setup() must run first"
            x, y = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
            spec = self.train_spec
            if split != "train":  # evaluation images are never augmented
                spec = TrainSpec(dtype=spec.dtype, seed=spec.seed)
            self._sources[split] = BatchSource(x, y, spec)
        return self._sources[split]

    def _loader(self, source: BatchSource, sampler: Sampler) -> DataLoader:
        # batch_size=None: each sampler item is a whole batch, cut by BatchDataset.
        return DataLoader(
            BatchDataset(source),
            sampler=sampler,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        source = self._source("train")
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        spec = self.train_spec
        sampler = EpochBatchSampler(
            len(source), spec.batch_size, spec.seed, rank, world, self.native_order
        )
        return self._loader(source, sampler)

    def _eval_loader(self, split: str) -> DataLoader:
        source = self._source(split)
        return self._loader(source, SequentialBatchSampler(len(source), self.eval_batch_size))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


# The first name of ImageDataModule, from when MNIST was its only dataset: existing code that
# imports it keeps working.
MNISTDataModule = ImageDataModule
