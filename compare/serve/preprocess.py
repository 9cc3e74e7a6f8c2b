"""A drawing made into an MNIST image, as the dataset's own digits were made.

LeCun, Cortes and Burges describe it on the MNIST page: each digit was size-normalised to fit
a 20x20 box, keeping its aspect ratio, anti-aliased to grey levels, then placed in a 28x28
image so that its centre of mass lies at the centre. ``mnist_image`` does the same to a
drawing: the bounding box of the ink, an area-average resize of its longer side to 20 pixels
(each new pixel the mean of the drawing's pixels it covers: the anti-aliasing), and a shift
that puts the centre of mass at pixel (14, 14) (row and column index, where the dataset's own
digits have theirs), rounded to whole pixels.
"""

from __future__ import annotations

import numpy as np

SIZE, BOX = 28, 20  # the image, and the box the digit is scaled into
INK = 0.05  # a pixel darker than this counts towards the bounding box (0 white .. 1 ink)


def area_matrix(source: int, target: int) -> np.ndarray:
    """``(target, source)`` weights: row ``i`` averages the source pixels that target pixel
    ``i`` covers, fractions of pixels included, so ``R @ v`` resizes a line by area."""
    edges = np.linspace(0, source, target + 1)  # target pixel i spans [edges[i], edges[i+1])
    lo, hi = edges[:-1, None], edges[1:, None]
    cells = np.arange(source)[None, :]
    overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def mnist_image(drawing: np.ndarray) -> np.ndarray:
    """``(H, W)`` ink in [0, 1] (1 = ink) -> ``(28, 28)`` float32 in [0, 1], MNIST's way; a
    blank drawing gives a blank image."""
    ink = np.asarray(drawing, dtype=np.float64)
    rows, cols = np.nonzero(ink > INK)
    out = np.zeros((SIZE, SIZE), dtype=np.float64)
    if rows.size == 0:
        return out.astype(np.float32)
    digit = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]  # the bounding box
    h, w = digit.shape
    scale = BOX / max(h, w)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    small = area_matrix(h, th) @ digit @ area_matrix(w, tw).T  # (th, tw)
    top, left = (SIZE - th) // 2, (SIZE - tw) // 2
    out[top : top + th, left : left + tw] = small
    mass = out.sum()
    ys, xs = np.indices(out.shape)
    dy = round(SIZE / 2 - (ys * out).sum() / mass)
    dx = round(SIZE / 2 - (xs * out).sum() / mass)
    shifted = np.zeros_like(out)
    # Move by (dy, dx), clipped so the box stays inside the image.
    dy = int(np.clip(dy, -top, SIZE - th - top))
    dx = int(np.clip(dx, -left, SIZE - tw - left))
    shifted[top + dy : top + dy + th, left + dx : left + dx + tw] = small
    return np.clip(shifted, 0, 1).astype(np.float32)
