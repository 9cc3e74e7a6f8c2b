"""lightning_cnn.datamodule: the shared batch order, its DDP shares, augmentation, loading."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from cnn_common.batches import augment_batch, epoch_batches, shard_batches  # noqa: E402
from cnn_common.data import Data  # noqa: E402
from cnn_common.spec import TrainSpec  # noqa: E402
from lightning_cnn.datamodule import (  # noqa: E402
    BatchDataset,
    EpochBatchSampler,
    ImageDataModule,
    MNISTDataModule,
    SequentialBatchSampler,
)
from pytorch_cnn.batching import BatchSource  # noqa: E402
from pytorch_cnn.network import to_nchw  # noqa: E402


def tiny_data(n: int = 50, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 6, 5, 1), dtype=np.float32)
    y = rng.integers(0, 3, n)
    return Data("tiny", x, y, x[:7], y[:7], x[:9], y[:9], ("a", "b", "c"))


@pytest.mark.parametrize("epoch", [0, 3])
def test_one_process_gets_the_shared_batch_order_of_each_epoch(epoch: int) -> None:
    sampler = EpochBatchSampler(103, 10, seed=4)
    sampler.set_epoch(epoch)
    keys = list(sampler)
    expected = epoch_batches(103, 10, 4, epoch)
    assert len(keys) == len(sampler) == len(expected) == 11
    for step, (key, idx) in enumerate(zip(keys, expected, strict=True)):
        assert key[:2] == (epoch, step)
        np.testing.assert_array_equal(key[2], idx)


@pytest.mark.parametrize(("n", "world"), [(103, 2), (103, 3), (40, 4), (20, 3)])
def test_ddp_ranks_take_their_own_shares_of_the_order(n: int, world: int) -> None:
    batches = epoch_batches(n, 10, 1, 2)
    shares = []
    for rank in range(world):
        sampler = EpochBatchSampler(n, 10, seed=1, rank=rank, world_size=world)
        sampler.set_epoch(2)
        keys = list(sampler)
        assert len(keys) == len(sampler)
        expected = shard_batches(batches, rank, world)
        for key, idx in zip(keys, expected, strict=True):
            np.testing.assert_array_equal(key[2], idx)
            np.testing.assert_array_equal(batches[key[1]], idx)  # step = place in global list
        shares.append({int(key[1]) for key in keys})
    # every batch is taken; only the padding that evens out the step counts repeats
    assert set().union(*shares) == set(range(len(batches)))
    if len(batches) % world == 0:
        assert sum(len(share) for share in shares) == len(batches)


def test_a_batch_is_cut_from_the_tensors_and_augmented_with_its_global_step() -> None:
    data = tiny_data()
    spec = TrainSpec(batch_size=8, augment_shift=2, seed=5)
    dataset = BatchDataset(BatchSource(data.x_train, data.y_train, spec))
    idx = np.array([3, 1, 4, 1, 5])
    x, y = dataset[(2, 6, idx)]
    expected = to_nchw(augment_batch(data.x_train[idx], 2, 5, 2, 6))
    assert x.shape == (5, 1, 6, 5) and x.is_contiguous()
    torch.testing.assert_close(x, expected, rtol=0, atol=0)
    np.testing.assert_array_equal(y.numpy(), data.y_train[idx])
    other_step, _ = dataset[(2, 7, idx)]
    assert not torch.equal(other_step, x)  # the step seeds the shift


def test_without_augmentation_a_batch_is_a_plain_slice() -> None:
    data = tiny_data()
    source = BatchSource(data.x_train, data.y_train, TrainSpec(dtype="float64"))
    x, _ = source.batch(0, 0, np.array([2, 0]))
    assert x.dtype == torch.float64
    np.testing.assert_array_equal(x.numpy(), data.x_train[[2, 0]].transpose(0, 3, 1, 2))


def test_evaluation_batches_cover_a_split_in_order() -> None:
    keys = list(SequentialBatchSampler(25, 10))
    assert [len(k[2]) for k in keys] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate([k[2] for k in keys]), np.arange(25))
    assert list(SequentialBatchSampler(0, 10)) == []


def test_loaders_of_a_prepared_dataset() -> None:
    data = tiny_data()
    module = MNISTDataModule.from_data(data, TrainSpec(batch_size=8, seed=2), eval_batch_size=4)
    module.setup("fit")
    train = module.train_dataloader()
    train.sampler.set_epoch(1)
    labels = np.concatenate([y.numpy() for _, y in train])
    order = np.concatenate(epoch_batches(50, 8, 2, 1))
    np.testing.assert_array_equal(labels, data.y_train[order])
    val = np.concatenate([y.numpy() for _, y in module.val_dataloader()])
    np.testing.assert_array_equal(val, data.y_val)
    test = np.concatenate([y.numpy() for _, y in module.test_dataloader()])
    np.testing.assert_array_equal(test, data.y_test)


def test_setup_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []

    def fake_prepare_data(name: str, **kwargs: object) -> Data:
        calls.append({"name": name, **kwargs})
        return tiny_data(200)

    monkeypatch.setattr("cnn_common.data.prepare_data", fake_prepare_data)
    module = MNISTDataModule(dataset="fashion-mnist", data_dir="/nowhere", subset=100, seed=3)
    module.setup("fit")
    assert calls == [
        {
            "name": "fashion-mnist",
            "validation_size": 5000,
            "seed": 3,
            "root": "/nowhere",
            "dtype": "float32",
            "download": False,
        }
    ]
    assert module.data is not None
    assert (len(module.data.x_train), len(module.data.x_val), len(module.data.x_test)) == (
        100,
        7,
        9,
    )  # subset keeps the first 100 training images; validation and test stay whole


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_any_registry_dataset_loads_with_the_shared_split(data_dir, dataset: str) -> None:
    module = MNISTDataModule(dataset=dataset, data_dir=str(data_dir), subset=500, download=False)
    module.prepare_data()
    module.setup("fit")
    data = module.data
    assert data is not None and data.name == dataset
    assert data.x_train.shape == (500, 28, 28, 1) and data.x_train.dtype == np.float32
    assert len(data.class_names) == 10
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (128, 1, 28, 28) and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_the_first_name_is_the_same_class() -> None:
    import lightning_cnn

    assert MNISTDataModule is ImageDataModule
    assert lightning_cnn.MNISTDataModule is lightning_cnn.ImageDataModule is ImageDataModule
    module = MNISTDataModule.from_data(tiny_data(), TrainSpec(batch_size=8))
    assert type(module) is ImageDataModule and module.dataset == "tiny"
