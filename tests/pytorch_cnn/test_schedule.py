"""Weight decay and the learning-rate schedule in the plain PyTorch loop:
``cnn_common.schedule.learning_rate`` is what PyTorch's own schedulers give where they mean
the same thing, ``make_optimizer`` builds PyTorch's own classes for each decay convention and
one step of each is the formula, and a training run interrupted mid-schedule and resumed ends
as the uninterrupted one. (The float64 reference over several updates is the contract suite's:
tests/contract/test_schedule.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pytorch_cnn.training  # noqa: E402
from cnn_common.results import RESULT_FILE, WEIGHTS_FILE, RunResult  # noqa: E402
from cnn_common.schedule import learning_rate  # noqa: E402
from cnn_common.spec import TrainSpec  # noqa: E402
from cnn_common.weights import load_weights  # noqa: E402
from pytorch_cnn.__main__ import main  # noqa: E402
from pytorch_cnn.optim import (  # noqa: E402
    DecoupledSGD,
    KerasAdam,
    make_optimizer,
    set_learning_rate,
)

LR = 0.1
Rates = list[float]  # the learning rate of each period (epoch or update) in turn


def torch_rates(make: object, count: int) -> Rates:
    """The rates an optimiser at ``LR`` takes over ``count`` periods, ``make`` building
    PyTorch's scheduler from the optimiser, stepped after each period as PyTorch code does."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    scheduler = make(optimizer)  # type: ignore[operator]
    rates = []
    for _ in range(count):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def spec_rates(train: TrainSpec, steps_per_epoch: int) -> Rates:
    """``learning_rate`` of every update of ``train``'s run; with ``lr_interval="epoch"``
    one rate per epoch (its first update's), having checked that the epoch keeps it."""
    updates = train.epochs * steps_per_epoch
    rates = [learning_rate(train, s, steps_per_epoch) for s in range(updates)]
    if train.lr_interval == "step":
        return rates
    epochs = [rates[e * steps_per_epoch : (e + 1) * steps_per_epoch] for e in range(train.epochs)]
    assert all(len(set(epoch)) == 1 for epoch in epochs)  # one rate for a whole epoch
    return [epoch[0] for epoch in epochs]


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_step_schedule_is_torchs_step_lr(interval: str) -> None:
    train = TrainSpec(
        learning_rate=LR,
        lr_schedule="step",
        lr_step_size=3,
        lr_gamma=0.5,
        lr_interval=interval,
        epochs=4,
    )
    expected = spec_rates(train, 5)
    found = torch_rates(
        lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5), len(expected)
    )
    assert found == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_cosine_schedule_is_torchs_cosine_annealing(interval: str) -> None:
    train = TrainSpec(learning_rate=LR, lr_schedule="cosine", lr_interval=interval, epochs=6)
    expected = spec_rates(train, 4)
    found = torch_rates(
        lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=len(expected)),
        len(expected),
    )
    # PyTorch's recursive form against the closed one: close, and 0 stays far below
    assert found == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_warm_up_then_cosine_is_torchs_linear_lr_then_cosine_annealing(interval: str) -> None:
    """PyTorch expresses the spec's warm-up exactly: ``LinearLR`` from ``1 / (W + 1)`` to 1
    over ``W`` periods gives ``lr * (t + 1) / (W + 1)`` for ``t < W``; ``SequentialLR`` hands
    over at ``W`` to ``CosineAnnealingLR(T_max=T - W)``, which starts at ``u = t - W = 0``."""
    warmup = 3
    train = TrainSpec(
        learning_rate=LR,
        lr_schedule="cosine",
        lr_warmup=warmup,
        lr_interval=interval,
        epochs=7 if interval == "epoch" else 3,
    )
    expected = spec_rates(train, 4)
    total = len(expected)

    def make(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        warm = torch.optim.lr_scheduler.LinearLR(
            opt, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup
        )
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup)
        return torch.optim.lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[warmup])

    found = torch_rates(make, total)
    assert expected[:warmup] == pytest.approx([LR * (t + 1) / (warmup + 1) for t in range(warmup)])
    assert found == pytest.approx(expected, rel=1e-9, abs=1e-15)


# ---------------------------------------------------------------- the optimisers' weight decay

W0 = np.array([[0.5, -1.0], [2.0, 0.25]])  # a kernel
B0 = np.array([0.3, -0.6])  # a bias, decayed with "all" only
GRADS = [np.array([[0.1, -0.2], [0.05, 0.3]]), np.array([[-0.3, 0.1], [0.2, -0.05]])]
BIAS_GRADS = [np.array([0.2, -0.1]), np.array([0.1, 0.4])]
WD, RATES = 0.2, (0.1, 0.05)  # a different rate for each update, set by set_learning_rate


def adam_step(
    w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, t: int, lr: float, train: TrainSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adam's update of ``w`` (both epsilon placements) and its new moments."""
    b1, b2, eps = train.beta_1, train.beta_2, train.epsilon
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    if train.epsilon_convention == "torch":
        step = lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    else:
        step = lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return w - step, m, v


def expected_weights(
    train: TrainSpec, w: np.ndarray, grads: list[np.ndarray], decayed: bool
) -> np.ndarray:
    """``w`` after one update per gradient, by the formulas of ``cnn_common.schedule``."""
    wd = train.weight_decay if decayed else 0.0
    m, v, buf = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(grads, RATES, strict=True), start=1):
        if train.weight_decay_convention == "l2":
            g = g + wd * w
        else:
            w = w - lr * wd * w
        if train.optimizer == "sgd":
            buf = train.momentum * buf + g
            w = w - lr * buf
        else:
            w, m, v = adam_step(w, g, m, v, t, lr, train)
    return w


OPTIMISERS = {
    ("adam", "torch", "l2"): torch.optim.Adam,
    ("adam", "torch", "decoupled"): torch.optim.AdamW,
    ("adam", "keras", "l2"): KerasAdam,
    ("adam", "keras", "decoupled"): KerasAdam,
    ("sgd", "torch", "l2"): torch.optim.SGD,
    ("sgd", "torch", "decoupled"): DecoupledSGD,
}


@pytest.mark.parametrize("on", ["all", "kernels"])
@pytest.mark.parametrize("case", OPTIMISERS, ids=lambda case: "-".join(case))
def test_make_optimizer_decays_by_the_convention(case: tuple[str, str, str], on: str) -> None:
    """``torch.optim.Adam(weight_decay)`` and ``SGD(weight_decay)`` are the l2 convention,
    ``torch.optim.AdamW`` the decoupled one, at each update's scheduled rate; the decay
    reaches the kernels only when told to."""
    optimizer_name, epsilon, convention = case
    train = TrainSpec(
        optimizer=optimizer_name,
        epsilon_convention=epsilon,
        learning_rate=RATES[0],
        epsilon=0.1,  # large: Adam's step is then no mere sign of the gradient
        momentum=0.9,
        weight_decay=WD,
        weight_decay_convention=convention,
        weight_decay_on=on,
        dtype="float64",
    )
    kernel = torch.nn.Parameter(torch.from_numpy(W0.copy()))
    bias = torch.nn.Parameter(torch.from_numpy(B0.copy()))
    optimizer = make_optimizer([("dense.kernel", kernel), ("dense.bias", bias)], train)
    assert type(optimizer) is OPTIMISERS[case]
    # two epochs of one update, halving the rate after the first: RATES
    schedule = dataclasses.replace(train, lr_schedule="step", lr_gamma=0.5, epochs=2)
    for step, (g, gb) in enumerate(zip(GRADS, BIAS_GRADS, strict=True)):
        kernel.grad, bias.grad = torch.from_numpy(g.copy()), torch.from_numpy(gb.copy())
        assert set_learning_rate(optimizer, schedule, step, 1) == pytest.approx(RATES[step])
        optimizer.step()
    np.testing.assert_allclose(
        kernel.detach().numpy(), expected_weights(train, W0, GRADS, True), rtol=1e-13
    )
    np.testing.assert_allclose(
        bias.detach().numpy(), expected_weights(train, B0, BIAS_GRADS, on == "all"), rtol=1e-13
    )


def test_no_weight_decay_is_one_group_of_the_plain_optimiser() -> None:
    params = [("dense.kernel", torch.nn.Parameter(torch.zeros(2)))]
    for convention in ("l2", "decoupled"):
        train = TrainSpec(weight_decay_convention=convention)
        optimizer = make_optimizer(params, train)
        assert len(optimizer.param_groups) == 1
        assert optimizer.param_groups[0]["weight_decay"] == 0


def test_decoupled_sgd_refuses_a_negative_decay() -> None:
    with pytest.raises(ValueError, match="decoupled_decay"):
        DecoupledSGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, decoupled_decay=-1.0)


# ------------------------------------------------------------------------ resume mid-schedule

SCHEDULE_FLAGS = [
    "--set", "train.lr_schedule=cosine",
    "--set", "train.lr_interval=step",
    "--set", "train.lr_warmup=2",
    "--set", "train.weight_decay=0.01",
    "--set", "train.weight_decay_convention=decoupled",
]  # fmt: skip


def _train(data_dir: Path, out: Path, *extra: str) -> int:
    args = ["train", "--data-dir", str(data_dir), "--subset", "600", "--eval-subset", "200"]
    args += ["--epochs", "2", "--batch-size", "100", "--quiet", "--out", str(out)]
    return main([*args, *SCHEDULE_FLAGS, *extra])


def test_a_run_interrupted_mid_schedule_resumes_to_the_same_weights(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pytorch-cnn train`` with a per-step cosine schedule after a warm-up and decoupled
    decay, interrupted two updates into epoch 2 (after checkpoint 1) and resumed, ends with
    the weights and step losses of the uninterrupted run: the schedule picks up at update 8."""
    monkeypatch.setenv("CNN_COMMAND", "")  # main() sets it; restored afterwards
    assert _train(data_dir, tmp_path / "whole") == 0
    whole = RunResult.from_json(tmp_path / "whole" / RESULT_FILE)
    assert whole.train_spec["lr_schedule"] == "cosine" and whole.train_spec["weight_decay"] == 0.01

    rates: list[tuple[int, float]] = []
    interrupted: list[int] = []
    original = pytorch_cnn.training.set_learning_rate

    def interrupting(optimizer, train_spec, step, steps_per_epoch):  # noqa: ANN001, ANN202
        if step == steps_per_epoch + 2 and not interrupted:  # the first run only
            interrupted.append(step)
            raise KeyboardInterrupt
        rates.append((step, original(optimizer, train_spec, step, steps_per_epoch)))
        return rates[-1][1]

    monkeypatch.setattr(pytorch_cnn.training, "set_learning_rate", interrupting)
    assert _train(data_dir, tmp_path / "cut") == 130  # what an interrupt exits with
    assert not (tmp_path / "cut" / RESULT_FILE).exists()
    assert _train(data_dir, tmp_path / "cut", "--resume") == 0
    # updates 0-7 (one epoch: 6, and 2 of the next), then the resumed run from update 6 on
    assert [step for step, _ in rates] == [*range(8), *range(6, 12)]
    assert len(set(rate for _, rate in rates)) > 6  # the rate did change along the way

    cut = RunResult.from_json(tmp_path / "cut" / RESULT_FILE)
    assert cut.extra["resumed_from_epoch"] == 1
    assert cut.step_losses == whole.step_losses
    a = load_weights(tmp_path / "whole" / WEIGHTS_FILE)[0]
    b = load_weights(tmp_path / "cut" / WEIGHTS_FILE)[0]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
