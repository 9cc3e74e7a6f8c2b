"""cnn_common.seeds: named seed streams, independent of each other and reproducible anywhere."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from cnn_common.seeds import STREAMS, generator, int_seed, seed_sequence


def draws(seed: int, stream: str, *keys: int) -> np.ndarray:
    return generator(seed, stream, *keys).random(64)


def test_the_streams() -> None:
    assert set(STREAMS) == {"init", "order", "native_order", "augment", "dropout", "split"}
    assert len(set(STREAMS.values())) == len(STREAMS)  # a tag each


def test_reproducible_in_this_and_another_process() -> None:
    np.testing.assert_array_equal(draws(3, "augment", 1, 7), draws(3, "augment", 1, 7))
    assert int_seed(3, "dropout", 2) == int_seed(3, "dropout", 2)
    code = (
        "import json; from cnn_common.seeds import generator, int_seed;"
        "print(json.dumps([generator(3, 'augment', 1, 7).random(64).tolist(),"
        " int_seed(3, 'dropout', 2)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    values, integer = json.loads(out)
    assert values == draws(3, "augment", 1, 7).tolist()
    assert integer == int_seed(3, "dropout", 2)


def test_a_stream_is_its_tag_mixed_into_the_seed() -> None:
    # The derivation is part of every record (batch order, split, initial weights).
    expected = np.random.default_rng(np.random.SeedSequence([4, 0x0D3E, 1, 2])).random(8)
    np.testing.assert_array_equal(generator(4, "order", 2).random(8), expected)
    assert seed_sequence(4, "order", 2).entropy == [4, 0x0D3E, 1, 2]
    # the number of keys is part of the entropy: a trailing key 0 is not the same as no key
    assert int_seed(4, "init") != int_seed(4, "init", 0)


def test_streams_seeds_and_keys_are_independent() -> None:
    """No two of (stream, seed, keys) share their numbers; two independent uniform samples
    of 64 are nowhere near equal, and their correlation is small."""
    cases = [
        (seed, stream, *keys)
        for stream in STREAMS
        for seed in (0, 1, 2)
        for keys in ((0, 1), (1, 0), (1, 1), (2, 0))
    ]
    samples = {case: draws(*case) for case in cases}
    for a, b in itertools.combinations(cases, 2):
        assert not np.allclose(samples[a], samples[b]), (a, b)
        assert abs(np.corrcoef(samples[a], samples[b])[0, 1]) < 0.6, (a, b)
    # the seed and a key do not trade places, and the streams differ from the first draw
    assert not np.allclose(draws(0, "order", 1), draws(1, "order", 0))
    assert not np.allclose(draws(0, "init"), draws(0, "split"))


def test_changing_one_stream_leaves_the_others() -> None:
    before = draws(0, "order", 0)
    dropout = generator(0, "dropout", 0)
    dropout.random(10_000)  # a framework drawing more dropout masks than another
    np.testing.assert_array_equal(draws(0, "order", 0), before)


def test_int_seed_range_and_type() -> None:
    values = [
        int_seed(seed, stream, *keys)
        for seed in (0, 1, 2**40)
        for stream in STREAMS
        for keys in ((), (3,), (3, 4))
    ]
    assert all(type(v) is int and 0 <= v <= 2**31 - 1 for v in values)
    assert len(set(values)) > 0.9 * len(values)  # spread out, not one value
    # a different stream or key gives a different integer
    assert int_seed(0, "init") != int_seed(0, "dropout")
    assert int_seed(0, "dropout", 1) != int_seed(0, "dropout", 2)


def test_an_unknown_stream_is_refused() -> None:
    for call in (generator, int_seed, seed_sequence):
        with pytest.raises(ValueError) as info:
            call(0, "shuffle", 1)
        assert "unknown seed stream 'shuffle'" in str(info.value)
        assert all(name in str(info.value) for name in STREAMS)
