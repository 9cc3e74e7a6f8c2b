"""cnn_common.batches: the one batch order, its shards, and the shared random shift."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cnn_common.batches import (
    augment_batch,
    augment_rng,
    epoch_batches,
    random_shift,
    shard_batches,
    steps_per_epoch,
)


@pytest.mark.parametrize(
    ("n", "batch_size"), [(1, 1), (10, 3), (128, 128), (1000, 128), (55_000, 128), (5, 64)]
)
def test_every_index_once_and_last_partial_batch_kept(n: int, batch_size: int) -> None:
    batches = epoch_batches(n, batch_size, seed=0, epoch=0)
    assert len(batches) == steps_per_epoch(n, batch_size) == -(-n // batch_size)
    assert all(len(b) == batch_size for b in batches[:-1])
    assert len(batches[-1]) == n - batch_size * (len(batches) - 1)  # the remainder, not dropped
    order = np.concatenate(batches)
    assert order.dtype == np.int64
    np.testing.assert_array_equal(np.sort(order), np.arange(n))


def test_reproducible_and_different_across_epochs_and_seeds() -> None:
    first = np.concatenate(epoch_batches(1000, 32, seed=5, epoch=2))
    again = np.concatenate(epoch_batches(1000, 32, seed=5, epoch=2))
    np.testing.assert_array_equal(first, again)
    others = [
        np.concatenate(epoch_batches(1000, 32, seed=5, epoch=3)),
        np.concatenate(epoch_batches(1000, 32, seed=6, epoch=2)),
        np.concatenate(epoch_batches(1000, 32, seed=2, epoch=5)),  # not a function of seed+epoch
    ]
    for other in others:
        # two independent permutations of 1000 share ~1 position by chance
        assert np.mean(first == other) < 0.02
    assert not np.array_equal(first, np.arange(1000))  # shuffled, not file order


def test_same_batches_in_another_process() -> None:
    code = (
        "import json; from cnn_common.batches import epoch_batches;"
        "print(json.dumps([b.tolist() for b in epoch_batches(50, 8, 3, 1)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == [b.tolist() for b in epoch_batches(50, 8, 3, 1)]


def test_order_is_pinned() -> None:
    # The order is part of the record (resume, parity, saved runs): a change must be deliberate.
    # It is the permutation drawn from the "order" seed stream (tag 0x0D3E) of the seed and
    # the epoch: SeedSequence([seed, 0x0D3E, 1 key, epoch]).
    batches = epoch_batches(10, 4, seed=0, epoch=0)
    expected = np.random.default_rng(np.random.SeedSequence([0, 0x0D3E, 1, 0])).permutation(10)
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    np.testing.assert_array_equal(np.concatenate(batches), [9, 2, 6, 0, 7, 1, 5, 3, 4, 8])
    assert [len(b) for b in batches] == [4, 4, 2]
    later = np.random.default_rng(np.random.SeedSequence([7, 0x0D3E, 1, 3])).permutation(50)
    np.testing.assert_array_equal(np.concatenate(epoch_batches(50, 8, seed=7, epoch=3)), later)


@pytest.mark.parametrize(("n", "batch_size"), [(0, 4), (4, 0), (-1, 4)])
def test_bad_arguments(n: int, batch_size: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        epoch_batches(n, batch_size, 0, 0)


# ----------------------------------------------------------------------------- shards


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_shards_are_disjoint_equal_and_cover_all_when_even(world_size: int) -> None:
    batches = epoch_batches(1024, 32, seed=1, epoch=0)  # 32 batches
    shards = [shard_batches(batches, rank, world_size) for rank in range(world_size)]
    assert {len(s) for s in shards} == {32 // world_size}
    ids = [id(b) for s in shards for b in s]
    assert len(ids) == len(set(ids)) == 32  # disjoint and complete
    indices = np.concatenate([b for s in shards for b in s])
    np.testing.assert_array_equal(np.sort(indices), np.arange(1024))


@pytest.mark.parametrize(("n_batches", "world_size"), [(10, 4), (3, 2), (1, 4), (2, 5), (7, 3)])
def test_uneven_shards_wrap_around_to_equal_length(n_batches: int, world_size: int) -> None:
    batches = epoch_batches(n_batches * 4, 4, seed=0, epoch=0)
    shards = [shard_batches(batches, rank, world_size) for rank in range(world_size)]
    steps = -(-n_batches // world_size)
    assert all(len(s) == steps for s in shards)  # every rank takes the same number of steps
    taken = [id(b) for s in shards for b in s]
    assert {id(b) for b in batches} == set(taken)  # every batch is seen
    # the padding repeats batches from the start of the list, in order, as often as needed
    padded = [batches[i % n_batches] for i in range(steps * world_size)]
    for rank, shard in enumerate(shards):
        assert [id(b) for b in shard] == [id(b) for b in padded[rank::world_size]]


@pytest.mark.parametrize(("n", "batch_size", "world_size"), [(100, 8, 1), (100, 8, 3), (9, 4, 5)])
def test_steps_per_epoch_counts_one_process_share(n: int, batch_size: int, world_size: int) -> None:
    batches = epoch_batches(n, batch_size, seed=0, epoch=0)
    shard = shard_batches(batches, world_size - 1, world_size)
    assert steps_per_epoch(n, batch_size, world_size) == len(shard)


def test_shard_rank_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"rank 2 is not in \[0, 2\)"):
        shard_batches([np.arange(3)], 2, 2)


# ----------------------------------------------------------------------------- augmentation


def shift_by_hand(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image (H, W, C)`` moved down by ``dy`` and right by ``dx`` pixels, zeros shifted in."""
    h, w, _ = image.shape
    out = np.zeros_like(image)
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[i, j] = image[i - dy, j - dx]
    return out


def marked_images(n: int, size: int, seed: int) -> np.ndarray:
    """``(n, size, size, 2)``: channel 0 random content, channel 1 one marker in the centre."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, size, size, 2), dtype=np.float32)
    x[..., 0] = rng.uniform(0.1, 1.0, size=(n, size, size))
    x[:, size // 2, size // 2, 1] = 1.0
    return x


@pytest.mark.parametrize("max_shift", [1, 2, 3])
def test_random_shift_moves_content_by_at_most_max_shift(max_shift: int) -> None:
    x = marked_images(64, 9, seed=max_shift)
    out = random_shift(x, max_shift, np.random.default_rng(11))
    assert out.shape == x.shape and out.dtype == x.dtype
    seen = set()
    for image, shifted in zip(x, out, strict=True):
        # the marker shows where the centre went; it never leaves a 9x9 image
        (i,), (j,) = np.nonzero(shifted[..., 1])
        dy, dx = i - 4, j - 4
        assert abs(dy) <= max_shift and abs(dx) <= max_shift
        np.testing.assert_array_equal(shifted, shift_by_hand(image, dy, dx))
        seen.add((int(dy), int(dx)))
    # 64 draws over (2s+1)^2 offsets: both directions along both axes occur
    assert {d for d, _ in seen} == set(range(-max_shift, max_shift + 1))
    assert {d for _, d in seen} == set(range(-max_shift, max_shift + 1))


def test_random_shift_keeps_dtype_and_is_seeded() -> None:
    x = (np.random.default_rng(0).uniform(size=(16, 28, 28, 1)) * 255).astype(np.uint8)
    a = random_shift(x, 2, np.random.default_rng(4))
    b = random_shift(x, 2, np.random.default_rng(4))
    c = random_shift(x, 2, np.random.default_rng(5))
    assert a.dtype == np.uint8 and a.shape == x.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_augment_batch_is_identity_at_zero_and_seeded_by_step() -> None:
    x = np.random.default_rng(1).uniform(size=(8, 28, 28, 1)).astype(np.float32)
    assert augment_batch(x, 0, seed=0, epoch=0, step=0) is x
    a = augment_batch(x, 2, seed=0, epoch=1, step=3)
    np.testing.assert_array_equal(a, random_shift(x, 2, augment_rng(0, 1, 3)))
    # the "augment" seed stream (tag 0xA06) of the seed, the epoch and the step
    pinned = np.random.default_rng(np.random.SeedSequence([0, 0xA06, 2, 1, 3]))
    np.testing.assert_array_equal(a, random_shift(x, 2, pinned))
    np.testing.assert_array_equal(a, augment_batch(x, 2, seed=0, epoch=1, step=3))
    for other in [(0, 1, 4), (0, 2, 3), (1, 1, 3)]:
        assert not np.array_equal(a, augment_batch(x, 2, *other))
    assert not np.array_equal(a, x)
    assert float(x.sum()) >= float(a.sum())  # zeros shifted in, nothing added
