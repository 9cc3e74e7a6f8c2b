"""What a framework package declares about itself, and the contract it implements.

Each framework package (``numpy_cnn``, ``keras_cnn``, ...) holds a ``framework.py`` with one
``FrameworkInfo`` per framework it provides, and registers it in the ``cnn_rosetta.frameworks``
entry-point group of its distribution (``pyproject.toml``)::

    [project.entry-points."cnn_rosetta.frameworks"]
    numpy = "numpy_cnn.framework:FRAMEWORK"

``compare`` finds frameworks only through that group, so a package installed by a third party
is compared like the project's own (``docs/frameworks.md`` shows how to write one).

The package itself exports the contract (``CONTRACT`` below; ``docs/design.md``) as functions,
with ``lazy_exports``: a framework is imported only when one of its functions is first used,
so listing frameworks, reading ``--help`` or choosing a Keras backend imports none of them.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnn_common.conventions import (
    NATIVE_TOPICS,
    TRAIN_CHOICES,
    Convention,
    check_conventions,
    check_topics,
    not_native,
)
from cnn_common.errors import FrameworkMissingError
from cnn_common.spec import ModelSpec, TrainSpec, layers, native_pads

# The functions every framework package exports (see docs/design.md for their signatures).
CONTRACT = (
    "build",
    "train",
    "evaluate",
    "predict",
    "predict_logits",
    "feature_maps",
    "get_weights",
    "set_weights",
    "loss_and_grads",
    "layer_trace",
    "train_steps",
    "save",
    "load",
)
# What a framework package may export besides: ``cnn-compare bench`` uses it when it is there
# and says so in its record when it is not.
OPTIONAL_CONTRACT = ("phase_times",)


def check_native(native: object) -> frozenset[str]:
    """``train``'s ``native`` argument as a set (``cnn_common.conventions.TRAIN_CHOICES``: its
    own shuffling, 'same' placement, optimiser class and conventions); an unknown choice raises
    ``ValueError``. ``epsilon`` brings the framework's own optimiser class with it."""
    chosen = check_topics(native or (), TRAIN_CHOICES)
    return chosen | {"optimizer"} if "epsilon" in chosen else chosen


# The topics of the report's differences table, in its order.
TOPICS = (
    "adam_epsilon",
    "init",
    "layout",
    "flatten",
    "same_padding",
    "batch_order",
    "loss_logging",
    "accuracy",
    "kernels",
    "float64",
)


@dataclass(frozen=True)
class FrameworkInfo:
    """One framework, as the rest of the project needs to know it.

    ``native`` maps each of ``TOPICS`` to a sentence on what the framework does by default;
    ``conventions`` holds its own choice on each topic of
    ``cnn_common.conventions.CONVENTION_TOPICS`` it decides for itself (none: it follows the
    spec there). ``float64_exact`` is False for a framework that cannot compute the whole
    model in float64 (its ``native["float64"]`` says why). ``env`` is set in the framework's
    worker process before anything is imported (Keras reads its backend once, at import).
    """

    name: str  # on the command line and in the run record: numpy, keras-jax, ...
    label: str  # in the report: "Keras 3 (jax backend)"
    package: str  # the package that implements the contract
    requires: tuple[str, ...]  # top-level modules it needs
    extra: str  # the pip extra that installs them ("" = the base install)
    native: Mapping[str, str]
    model_suffix: str  # the file suffix of ``save``/``load``: .npz, .keras, .ckpt, .pt
    conventions: Mapping[str, Convention] = field(default_factory=dict)
    native_init: bool = True  # False: it has no initialisers of its own (the canonical ones)
    float64_exact: bool = True  # False: dtype float64 is computed (partly) in float32
    padding_convention: str = "tensorflow"  # its own 'same' placement (cnn_common.spec)
    native_order_augments: bool = True  # its own batch order can carry the shared augmentation
    # Its GPU kernels' determinism is fixed when its process starts (XLA reads XLA_FLAGS once):
    # a run cannot hand it back in a process started with the spec's.
    deterministic_at_start: bool = False
    data_parallel: bool = False  # train(devices=N > 1) trains in N processes (DDP)
    env: Mapping[str, str] = field(default_factory=dict)
    default: bool = False  # part of the default --frameworks
    order: int = 100  # position in tables and figures (lower first)
    bench_reference: bool = False  # what cnn-compare bench times the others against
    # How a training step holds its activations (cnn_common.memory): the images one thread
    # keeps at once (None: the whole batch, as autograd does), and whether each convolution
    # keeps its im2col rows for its backward pass.
    activation_images: int | None = None
    keeps_im2col: bool = False

    def __post_init__(self) -> None:
        missing = [topic for topic in TOPICS if topic not in self.native]
        if missing:
            raise ValueError(f"framework {self.name!r} declares no native default for {missing}")
        check_conventions(self.name, self.conventions)
        # Frozen mappings: a declaration is shared by everything that reads it.
        object.__setattr__(self, "native", types.MappingProxyType(dict(self.native)))
        object.__setattr__(self, "conventions", types.MappingProxyType(dict(self.conventions)))
        object.__setattr__(self, "env", types.MappingProxyType(dict(self.env)))


def not_native_here(
    info: FrameworkInfo, topic: str, model: ModelSpec, train: TrainSpec, gpu: bool = False
) -> str:
    """Why handing ``topic`` (``NATIVE_TOPICS``) back to ``info``'s framework changes nothing
    in a run of ``model`` and ``train``, or cannot ("" when it does): what the ablation
    reports instead of running an arm, and what ``cnn-compare run --native`` says it skipped.
    ``gpu``: the run can reach a GPU (``cnn_common.gpu.gpu_here``)."""
    name = info.name
    if topic == "init":
        return "" if info.native_init else f"{name} has no initialisers of its own"
    if topic == "order":
        if train.augment_shift and not info.native_order_augments:
            return (
                f"{name}'s own order (fit on arrays, shuffle=True) cannot apply the spec's "
                "augmentation"
            )
        return ""
    if topic == "padding":
        if not any(layer.padding == "same" for layer in layers(model)):
            return "not applicable: the spec has no 'same' padding"
        if not native_pads(model, info.padding_convention):
            return f"{name} places this spec's 'same' padding as the spec does"
        return ""
    why = not_native(name, info.conventions, topic, model, train, gpu)
    if not why and topic == "deterministic" and info.deterministic_at_start:
        return (
            f"{name} fixes its kernels' determinism when its process starts (XLA reads "
            "--xla_gpu_deterministic_ops from XLA_FLAGS once): its own needs a process started "
            "with --xla_gpu_deterministic_ops=false"
        )
    return why


def native_settings(
    info: FrameworkInfo,
    topics: Iterable[str],
    model: ModelSpec,
    train: TrainSpec,
    gpu: bool = False,
) -> tuple[str, tuple[str, ...], dict[str, str]]:
    """``(init, native, skipped)`` of a run with ``topics`` native for ``info``'s framework:
    its ``init`` (shared | native), its ``train(native=...)``, and why each topic that changes
    nothing (or cannot) is left out; ``gpu`` as for ``not_native_here``."""
    init, native, skipped = "shared", [], {}
    chosen = frozenset(topics)
    for topic in NATIVE_TOPICS:  # one order for every table
        if topic not in chosen:
            continue
        why = not_native_here(info, topic, model, train, gpu)
        if why:
            skipped[topic] = why
        elif topic == "init":
            init = "native"
        else:
            native.append(topic)
    return init, tuple(native), skipped


def require(info: FrameworkInfo) -> None:
    """Raise ``FrameworkMissingError`` naming the modules of ``info.requires`` that cannot be
    imported and the pip command that installs them: a command line calls it before importing
    its framework, so a missing one gets that message instead of a ``ModuleNotFoundError``."""

    def importable(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken parent package, a module without a spec
            return False

    missing = [repr(module) for module in info.requires if not importable(module)]
    if missing:
        install = f'pip install -e ".[{info.extra}]"' if info.extra else "pip install -e ."
        packages = f"the {missing[0]} package" if len(missing) == 1 else ", ".join(missing)
        raise FrameworkMissingError(
            f"framework {info.name!r} needs {packages}, which is not installed", install
        )


# The --help epilog of every command line: what its exit status means.
EXIT_STATUSES = (
    "exit status: 0 done; 1 a run failed or a check found a departure; 2 a user error (the "
    "message names the problem and the fix); 130 interrupted (Ctrl-C)"
)


def lazy_exports(
    package: str, homes: Mapping[str, str], before_import: Callable[[], None] | None = None
) -> None:
    """Export ``name -> module`` from ``package``, importing the module on first use.

    A module-level ``__getattr__`` and ``__dir__`` (PEP 562) do it. No submodule may be named
    like an exported name: importing a submodule binds it to its package under its own name,
    which would replace the function (a ``train.py`` beside ``train``), so such a package
    raises ``ValueError`` here. ``before_import`` runs before a home module is first imported
    (keras_cnn imports keras there with TensorFlow's start-up lines silenced).
    """
    module = sys.modules[package]
    exported = dict(homes)
    submodules = {found.name for found in pkgutil.iter_modules(getattr(module, "__path__", ()))}
    shadowed = sorted(submodules & set(exported))
    if shadowed:
        raise ValueError(
            f"package {package!r} has submodules named like the names it exports: {shadowed}; "
            "importing one would replace the exported name"
        )

    def __getattr__(name: str) -> Any:  # noqa: N807 - the PEP 562 hook
        if name not in exported:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if before_import is not None:
            before_import()
        value = getattr(importlib.import_module(exported[name]), name)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the PEP 562 hook
        return sorted(set(vars(module)) | set(exported))

    module.__getattr__ = __getattr__
    module.__dir__ = __dir__
    module.__all__ = list(exported)
