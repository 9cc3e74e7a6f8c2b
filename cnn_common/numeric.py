"""Central finite differences: the measured derivative that hand-written gradients are checked
against (``numpy-cnn gradcheck`` and the tests' float64 reference)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np


def numeric_gradient(
    f: Callable[[], float], array: np.ndarray, indices: Iterable[tuple[int, ...]], h: float = 1e-6
) -> np.ndarray:
    """Central differences ``(f(a + h) - f(a - h)) / 2h`` of ``f`` at ``indices`` of ``array``
    (changed in place, then restored): one float64 value per index, NaN where ``f`` returned
    NaN."""
    values = []
    for index in indices:
        saved = array[index]
        array[index] = saved + h
        up = f()
        array[index] = saved - h
        down = f()
        array[index] = saved
        values.append((up - down) / (2 * h))
    return np.asarray(values, dtype=np.float64)
