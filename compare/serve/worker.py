"""A framework's worker for ``cnn-compare serve``: one long-lived process that holds one
trained model and answers the server's requests about it.

``python -m compare.serve.worker FRAMEWORK WEIGHTS`` imports the framework (its backend and
thread counts set by the server, as ``compare.engine.launch.child_env`` sets them for every
worker), builds the model of the weight file's spec through the contract and loads the
weights. It answers on its standard output in ``compare.serve.wire`` messages, first
``{"ready": ...}``, then one answer per request read from its standard input:

- ``infer`` (``images (N, H, W, C)``): ``logits (N, K)`` and ``map/<layer>`` for every map of
  ``feature_maps``, in evaluation mode;
- ``trace`` (``images``, ``labels``): ``forward/<layer>`` for every layer, from the
  contract's ``layer_trace`` (what the kernel view reads);
- ``sources`` (``kinds``): the framework's own source of each layer kind
  (``compare.rosetta.task.source_entry`` on its package's ``rosetta.SOURCES``).

A request that fails gets ``{"error": message}`` and the worker carries on. Whatever the
framework prints goes to standard error, so it never mixes with the answers.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

import numpy as np

from compare.serve import wire


def _answer(module: Any, package: str, model: Any, header: dict[str, Any], arrays: dict) -> tuple:
    op = header.get("op")
    if op == "infer":
        images = arrays["images"]
        maps = module.feature_maps(model, images)
        logits = np.asarray(module.predict_logits(model, images), dtype=np.float32)
        out = {"logits": logits, **{f"map/{k}": np.asarray(v, np.float32) for k, v in maps.items()}}
        return {"layers": list(maps)}, out
    if op == "trace":
        trace = module.layer_trace(model, arrays["images"], arrays["labels"])
        forward = {
            k: np.asarray(v, np.float32) for k, v in trace.items() if k.startswith("forward/")
        }
        return {}, forward
    if op == "sources":
        from compare.rosetta.task import source_entry

        listed = importlib.import_module(f"{package}.rosetta").SOURCES
        kinds = [str(kind) for kind in header.get("kinds", [])]
        return {"sources": {k: [source_entry(n) for n in listed.get(k, [])] for k in kinds}}, {}
    if op == "ping":
        return {"pid": os.getpid()}, {}
    raise ValueError(f"unknown request {op!r}")


def main(argv: list[str]) -> int:
    framework, weights_path = argv
    replies = os.fdopen(os.dup(1), "wb")  # the answers' own channel
    os.dup2(2, 1)  # anything printed from here on goes to standard error
    requests = sys.stdin.buffer
    from cnn_common.weights import load_weights
    from compare.engine import registry

    module = registry.load(framework)
    weights, model_spec, _ = load_weights(weights_path)
    model = module.build(model_spec)
    module.set_weights(model, weights)
    module.feature_maps(model, np.zeros((1, *model_spec.input_shape), np.float32))  # warm up
    wire.send(replies, {"ready": True, "pid": os.getpid()})
    package = registry.get(framework).package
    while True:
        try:
            header, arrays = wire.receive(requests)
        except EOFError:
            return 0
        try:
            answer, out = _answer(module, package, model, header, arrays)
        except Exception as exc:  # noqa: BLE001 - the server shows it; the worker carries on
            traceback.print_exc()
            answer, out = {"error": f"{type(exc).__name__}: {exc}"}, {}
        wire.send(replies, answer, out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
