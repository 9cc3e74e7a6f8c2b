"""A drawing becomes an MNIST image the way the dataset's digits were made."""

from __future__ import annotations

import numpy as np

from cnn_common.data import Data
from compare.serve.preprocess import BOX, SIZE, area_matrix, mnist_image


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(image.shape)
    return float((ys * image).sum() / image.sum()), float((xs * image).sum() / image.sum())


def test_area_resize_keeps_the_mean_and_each_row_sums_to_one() -> None:
    r = area_matrix(7, 3)
    assert np.allclose(r.sum(axis=1), 1)
    line = np.arange(7.0)
    # area averaging keeps the mean of a line whose length it divides evenly into
    assert np.isclose((area_matrix(6, 3) @ np.arange(6.0)).mean(), np.arange(6.0).mean())
    assert (r @ line)[0] < (r @ line)[-1]


def test_a_stroke_is_boxed_to_20_pixels_and_centred_by_its_mass() -> None:
    drawing = np.zeros((140, 140))
    drawing[10:130, 60:75] = 1.0  # a tall bar in the left half, off-centre
    drawing[10:25, 75:100] = 1.0  # and a flag at its top: the mass sits high and left
    image = mnist_image(drawing)
    assert image.shape == (SIZE, SIZE) and image.dtype == np.float32
    rows, cols = np.nonzero(image > 0.05)
    assert rows.max() - rows.min() + 1 == BOX  # the longer side scaled to the box
    assert cols.max() - cols.min() + 1 < BOX  # the aspect ratio kept
    cy, cx = centre_of_mass(image)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert image.min() >= 0 and image.max() <= 1


def test_a_blank_drawing_gives_a_blank_image() -> None:
    assert not mnist_image(np.zeros((50, 80))).any()


def test_mnist_digits_come_back_close_to_themselves(mnist: Data) -> None:
    # The dataset's digits were made this way: preprocessing one again changes it little.
    for image in mnist.x_test[:50, :, :, 0]:
        again = mnist_image(image)
        assert np.corrcoef(image.ravel(), again.ravel())[0, 1] > 0.9
