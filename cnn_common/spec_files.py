"""Specs in files and on the command line: YAML/JSON loading and saving, ``key=value`` overrides.

A spec file has two sections, ``model:`` and ``train:``, holding the fields of ``ModelSpec``
and ``TrainSpec`` (``examples/seed.yaml``). Every error names the file and line, or the field,
and says what would be accepted.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cnn_common.errors import SpecError
from cnn_common.spec import ModelSpec, TrainSpec, spec_from_dict, spec_to_dict

# YAML 1.1 (PyYAML's dialect) reads ``1e-3`` as a string because its floats need a dot; YAML 1.2
# and JSON read it as a number, and it is how learning rates and epsilons are written.
_FLOAT_1_2 = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


@functools.cache
def _yaml_loader() -> type:
    import yaml  # imported on first use: loading a spec is rare, importing cnn_common is not

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789"))
    return Loader


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` that also reads exponent floats without a dot (``1e-3``) as floats."""
    import yaml

    return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: no arbitrary objects


def _syntax_error(path: Path, exc: Exception) -> SpecError:
    """A parse error as a ``SpecError`` naming the file, the line and column, and the problem."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:  # PyYAML: 0-based line and column
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
    elif isinstance(exc, json.JSONDecodeError):
        where, problem = f"line {exc.lineno}, column {exc.colno}", exc.msg
    else:
        where, problem = "", str(exc)
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    return SpecError(
        f"spec file {path} is not valid {kind}"
        + (f" at {where}" if where else "")
        + f": {problem}",
        f"fix the {kind} syntax there; examples/seed.yaml shows a complete spec",
    )


def load_spec(path: str | Path) -> tuple[ModelSpec, TrainSpec]:
    """Read a YAML (.yaml/.yml) or JSON spec file; unreadable files raise ``SpecError``."""
    path = Path(path)
    if path.is_dir():
        raise SpecError(f"spec {path} is a folder, not a file", "give --spec a .yaml or .json file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SpecError(
            f"cannot read spec file {path}: {reason}", "check the path given to --spec"
        ) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml_load(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is a user error here
        raise _syntax_error(path, exc) from None
    try:
        return spec_from_dict({} if data is None else data)
    except SpecError as exc:
        raise SpecError(f"spec file {path}: {exc.message}", exc.hint) from None


def save_spec(path: str | Path, model: ModelSpec, train: TrainSpec | None = None) -> None:
    """Write the specs as YAML or JSON (by suffix); ``load_spec`` reads it back unchanged."""
    path = Path(path)
    data = spec_to_dict(model, train)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(data, indent=2) + "\n")
    else:
        import yaml

        path.write_text(yaml.safe_dump(data, sort_keys=False))


def apply_overrides(
    model: ModelSpec, train: TrainSpec, overrides: Iterable[str]
) -> tuple[ModelSpec, TrainSpec]:
    """Apply ``key=value`` overrides: ``epochs=3``, ``train.seed=1``, ``conv.0.filters=8``,
    ``model.dense.0.units=128``, ``input_shape=[32,32,3]``. Values are parsed as YAML scalars.

    A key without a section is looked up in TrainSpec first, then ModelSpec. A key that names
    no field raises ``SpecError`` listing the fields that exist where it pointed.
    """
    import yaml

    data = spec_to_dict(model, train)
    for item in overrides:
        if "=" not in item:
            raise SpecError(f"override {item!r} is not key=value", "write e.g. --set epochs=3")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if parts[0] not in ("model", "train"):
            parts.insert(0, "train" if parts[0] in data["train"] else "model")
        try:
            value = yaml_load(raw)
        except yaml.YAMLError:
            value = raw
        node: Any = data
        for part in parts[:-1]:
            node = _child(node, part, key)
        last = parts[-1]
        if isinstance(node, list):
            node[_index(node, last, key)] = value
        elif isinstance(node, dict) and last in node:
            node[last] = value
        else:
            raise _no_field(node, last, key)
    try:
        return spec_from_dict(data)
    except SpecError as exc:
        raise SpecError(f"after --set: {exc.message}", exc.hint) from None


def _no_field(node: Any, part: str, key: str) -> SpecError:
    """The error for an override naming no field: the fields there, and the closest one."""
    if isinstance(node, dict):
        fields = list(node)
        close = difflib.get_close_matches(part, fields, n=1)
        hint = (
            f"did you mean {close[0]!r}? " if close else ""
        ) + f"fields there: {', '.join(fields)}"
        if {"model", "train"} <= set(fields):
            hint = "start the key with model. or train., or name a field of either"
    else:
        hint = "a value has no fields; check the key"
    return SpecError(f"override {key!r}: no field {part!r} there", hint)


def _child(node: Any, part: str, key: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, key)]
    if isinstance(node, dict) and part in node:
        return node[part]
    raise _no_field(node, part, key)


def _index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise SpecError(
            f"override {key!r}: {part!r} is not an index below {len(node)}",
            "count blocks from 0, e.g. conv.0.filters=8",
        )
    return int(part)
