"""Named seed streams: every random number of a run derives from its one seed through here.

``generator(seed, "order", epoch)`` is the generator of epoch ``epoch``'s batch order, and so
on for each stream below. Each stream mixes a fixed tag into the seed (NumPy's
``SeedSequence``), so the streams are independent of each other: changing how dropout draws
cannot move the batch order, and seed 1's initial weights share nothing with seed 0's.
Frameworks that seed their own generators (``torch.manual_seed``, Keras initialisers) take an
integer from ``int_seed`` with the same names.

Streams and their keys:

- ``init``: initial weights (``cnn_common.weights.init_weights``; a framework's native
  initialisers take ``int_seed(seed, "init")``, per layer ``int_seed(seed, "init", layer)``);
- ``order``: the shared batch order, one generator per epoch (key: epoch);
- ``native_order``: a framework's own shuffling when asked for (keys: epoch);
- ``augment``: the random shift of one batch (keys: epoch, step);
- ``dropout``: dropout masks (keys: epoch, and step or shard where a framework needs them);
- ``split``: the train/validation split of the training images.
"""

from __future__ import annotations

import numpy as np

STREAMS: dict[str, int] = {
    "init": 0x1417,
    "order": 0x0D3E,
    "native_order": 0x5A0F,
    "augment": 0xA06,
    "dropout": 0xD80,
    "split": 0x5EED,
}


def seed_sequence(seed: int, stream: str, *keys: int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of ``stream`` for the run seed ``seed`` and the stream's keys."""
    if stream not in STREAMS:
        raise ValueError(f"unknown seed stream {stream!r}; known: {', '.join(STREAMS)}")
    # The number of keys goes in too: SeedSequence pads its entropy with zeros, so without it
    # a trailing key 0 would give the same sequence as no key at all.
    entropy = [int(seed), STREAMS[stream], len(keys), *(int(k) for k in keys)]
    return np.random.SeedSequence(entropy)


def generator(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """A NumPy generator of ``stream`` (see the module docstring for the keys)."""
    return np.random.default_rng(seed_sequence(seed, stream, *keys))


def int_seed(seed: int, stream: str, *keys: int) -> int:
    """A non-negative 31-bit integer of ``stream``, for frameworks that take an integer seed."""
    return int(seed_sequence(seed, stream, *keys).generate_state(1)[0] & 0x7FFFFFFF)
