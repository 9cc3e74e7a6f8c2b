"""The explorer's web application (FastAPI): one page, its shipped assets, and a JSON API.

Every request is checked before anything runs: a body over ``MAX_BODY`` bytes is refused
(413) before it is read whole; JSON is parsed into pydantic models (an image must be 28x28
finite numbers in [0, 1], a drawing a base64 string of its stated size, a framework, layer or
test image one that exists), so nothing from a request is evaluated or unpickled, and a bad
one gets a 4xx with a message. Only the assets named in ``ASSETS`` are served: any other path
(``../``, absolute, encoded) is a 404. With a token (any bind beyond localhost), every request
must carry it: ``?token=`` once (the page then keeps it in a cookie) or the cookie.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware

from cnn_common.errors import UserError
from cnn_common.graph import IMAGE
from cnn_common.metrics import softmax
from cnn_common.spec import feature_map_layers, layers
from compare.serve.explain import check_position, explain, receptive_field
from compare.serve.folder import Folder
from compare.serve.preprocess import mnist_image
from compare.serve.workers import Worker, WorkerError

MAX_BODY = 1 << 20  # bytes: a drawing of 1024x1024 in base64 is 1.4 MB; the page sends 140x140
MAX_DRAWING = 560  # pixels a side
TOKEN_COOKIE = "cnn_serve_token"
ASSETS = {  # name -> media type: everything the page loads, shipped in the package
    "index.html": "text/html; charset=utf-8",
    "explorer.js": "text/javascript; charset=utf-8",
    "explorer.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class Drawing(Strict):
    width: Annotated[int, Field(ge=1, le=MAX_DRAWING)]
    height: Annotated[int, Field(ge=1, le=MAX_DRAWING)]
    data: Annotated[str, Field(max_length=4 * MAX_DRAWING * MAX_DRAWING)]  # base64 uint8 ink


class ImageRequest(Strict):
    """One image: exactly one of ``image`` (28x28 in [0, 1]), ``drawing`` or ``index``."""

    image: list[list[float]] | None = None
    drawing: Drawing | None = None
    index: Annotated[int, Field(ge=0)] | None = None
    frameworks: list[str] | None = None


class ExplainRequest(ImageRequest):
    layer: str
    row: Annotated[int, Field(ge=0)]
    col: Annotated[int, Field(ge=0)]
    channel: Annotated[int, Field(ge=0)]


def _encode(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return {"shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


class _Guard(BaseHTTPMiddleware):
    """Refuses oversized bodies (413) and, with a token, requests without it (403)."""

    def __init__(self, app: Any, token: str | None) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        if self.token is not None:
            given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                return JSONResponse(
                    {"error": "this server needs its access token: open the address it printed"},
                    status_code=403,
                )
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return JSONResponse({"error": f"the body is over {MAX_BODY} bytes"}, status_code=413)
        if request.method == "POST" and length is None:
            return JSONResponse({"error": "send a Content-Length"}, status_code=411)
        response = await call_next(request)
        if self.token is not None and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
        return response


def make_app(folder: Folder, workers: dict[str, Worker], token: str | None = None) -> FastAPI:
    """The application serving ``folder`` with one worker per framework."""
    app = FastAPI(title="cnn-rosetta explorer", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_Guard, token=token)
    by_name = {layer.name: layer for layer in layers(folder.spec)}
    maps = feature_map_layers(folder.spec)
    assets = resources.files("compare.serve") / "static"
    cache: dict[str, Any] = {}

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"error": f"bad request: {problems}"[:2000]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def refused(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.get("/")
    async def page() -> Response:
        return Response((assets / "index.html").read_bytes(), media_type=ASSETS["index.html"])

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)  # no icon: a browser asks for one

    @app.get("/static/{name}")
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, f"no asset {name!r}")
        return Response((assets / name).read_bytes(), media_type=ASSETS[name])

    @app.get("/api/summary")
    async def summary() -> dict[str, Any]:
        return folder.summary()

    @app.get("/api/lists")
    async def lists() -> dict[str, Any]:
        if "lists" not in cache:
            cache["lists"] = folder.lists()
        return cache["lists"]

    @app.get("/api/curves")
    async def curves() -> list[dict[str, Any]]:
        return folder.curves()

    @app.get("/api/sections")
    async def sections() -> list[dict[str, str]]:
        if "sections" not in cache:
            cache["sections"] = await asyncio.to_thread(folder.sections)
        return cache["sections"]

    @app.get("/api/test/{index}")
    async def test_image(index: int) -> dict[str, Any]:
        image, label = _test(index)
        return {"index": index, "label": label, "image": image[..., 0].tolist()}

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        return {
            name: {"alive": worker.alive(), "pid": worker.pid(), "starts": worker.starts}
            for name, worker in workers.items()
        }

    def _test(index: int) -> tuple[np.ndarray, int]:
        try:
            return folder.test_image(index)
        except UserError as exc:
            raise HTTPException(404, str(exc)) from None

    def _image(body: ImageRequest) -> tuple[np.ndarray, int | None]:
        """The request's image ``(H, W, C)`` float32 and its label (test images only)."""
        given = [body.image is not None, body.drawing is not None, body.index is not None]
        if sum(given) != 1:
            raise HTTPException(422, "give exactly one of image, drawing and index")
        if body.index is not None:
            return _test(body.index)
        if body.drawing is not None:
            d = body.drawing
            try:
                raw = base64.b64decode(d.data, validate=True)
            except (binascii.Error, ValueError):
                raise HTTPException(422, "drawing.data is not base64") from None
            if len(raw) != d.width * d.height:
                raise HTTPException(
                    422, f"drawing.data holds {len(raw)} bytes, not {d.width}x{d.height}"
                )
            ink = np.frombuffer(raw, np.uint8).reshape(d.height, d.width) / 255.0
            return mnist_image(ink)[..., None], None
        image = np.asarray(body.image, dtype=np.float64)
        shape = tuple(folder.spec.input_shape[:2])
        if image.shape != shape:
            raise HTTPException(422, f"image is {image.shape}, not {shape}")
        if not np.isfinite(image).all():
            raise HTTPException(422, "image holds NaN or infinite values")
        if image.min() < 0 or image.max() > 1:
            raise HTTPException(422, "image values must lie in [0, 1]")
        return image.astype(np.float32)[..., None], None

    def _chosen(body: ImageRequest) -> list[str]:
        chosen = body.frameworks if body.frameworks is not None else folder.frameworks
        unknown = [name for name in chosen if name not in workers]
        if unknown or not chosen:
            raise HTTPException(
                422, f"unknown framework {unknown or chosen}: use {', '.join(folder.frameworks)}"
            )
        return chosen

    @app.post("/api/predict")
    async def predict(body: ImageRequest) -> dict[str, Any]:
        image, label = _image(body)
        chosen = _chosen(body)
        answers = await asyncio.gather(
            *(workers[name].infer(image) for name in chosen), return_exceptions=True
        )
        results: dict[str, Any] = {}
        for name, answer in zip(chosen, answers, strict=True):
            if isinstance(answer, WorkerError):
                results[name] = {"error": str(answer)}
                continue
            if isinstance(answer, BaseException):
                raise answer
            header, arrays = answer
            if "error" in header:
                results[name] = {"error": header["error"], "restarted": header["restarted"]}
                continue
            p = softmax(arrays["logits"][None])[0]  # (K,): this image's probabilities
            results[name] = {
                "probabilities": p.tolist(),
                "class": int(np.argmax(p)),
                "maps": {layer: _encode(arrays[f"map/{layer}"]) for layer in header["layers"]},
                "restarted": header["restarted"],
            }
        return {"image": image[..., 0].tolist(), "label": label, "results": results}

    @app.post("/api/explain")
    async def explain_pixel(body: ExplainRequest) -> dict[str, Any]:
        image, _ = _image(body)
        chosen = _chosen(body)
        layer = by_name.get(body.layer)
        if layer is None or layer.name not in maps:
            raise HTTPException(422, f"no map layer {body.layer!r}: use one of {maps}")
        try:
            check_position(layer, body.row, body.col, body.channel)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        weights = folder.weights
        box = (body.row, body.row + 1, body.col, body.col + 1)
        field = receptive_field(by_name, layer.name, box, tuple(folder.spec.input_shape[:2]))
        labels = np.zeros(1, dtype=np.int64)  # layer_trace's loss needs one; unused here

        async def one(name: str) -> dict[str, Any]:
            try:
                header, arrays = await asyncio.to_thread(
                    workers[name].request,
                    {"op": "trace"},
                    {"images": image[None], "labels": labels},
                )
            except WorkerError as exc:
                return {"error": str(exc)}
            if "error" in header:
                return {"error": header["error"]}
            outputs = {key.partition("/")[2]: value[0] for key, value in arrays.items()}
            outputs[IMAGE] = image
            return {
                **explain(layer, outputs, weights[name], body.row, body.col, body.channel),
                "restarted": header["restarted"],
            }

        done = await asyncio.gather(*(one(name) for name in chosen))
        return {
            "layer": layer.name,
            "kind": layer.kind,
            "receptive_field": list(field),
            "results": dict(zip(chosen, done, strict=True)),
        }

    @app.get("/api/sources/{layer}")
    async def sources(layer: str) -> dict[str, Any]:
        found = by_name.get(layer)
        if found is None:
            raise HTTPException(404, f"no layer {layer!r}")
        kind = "grouped_conv" if found.kind == "conv" and found.groups > 1 else found.kind
        key = f"sources/{kind}"
        if key not in cache:

            async def one(name: str) -> Any:
                try:
                    header, _ = await asyncio.to_thread(
                        workers[name].request, {"op": "sources", "kinds": [kind]}
                    )
                except WorkerError as exc:
                    return {"error": str(exc)}
                return header.get("sources", {}).get(kind, [])

            done = await asyncio.gather(*(one(name) for name in folder.frameworks))
            cache[key] = {"kind": kind, "sources": dict(zip(folder.frameworks, done, strict=True))}
        return cache[key]

    return app
