"""``cnn-compare serve [DIR]``: the explorer of a results folder, on a local web server.

Starts uvicorn on ``--host`` (default 127.0.0.1) and ``--port`` (default 8000) and prints the
address. A bind beyond the local machine requires an access token: one is drawn at random
(``secrets.token_urlsafe``) unless ``--token`` gives one, and the printed address carries it,
as Jupyter does; ``--token ''`` with such a host is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import secrets
import socket
import tempfile
from pathlib import Path

from cnn_common.errors import UserError
from compare.engine.layout import worker_log

DESCRIPTION = (
    "Serve the explorer of a results folder (default runs/compare) at http://127.0.0.1:8000: "
    "draw a digit or pick a test image, and see every framework's prediction, feature maps "
    "and the arithmetic of one kernel side by side."
)
LOCAL = ("127.0.0.1", "localhost", "::1")


def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``cnn-compare serve``."""
    parser.add_argument(
        "dir", type=Path, nargs="?", default=Path("runs/compare"), help="the results folder"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    parser.add_argument(
        "--token", help="access token (default: a random one for a host beyond localhost)"
    )
    parser.add_argument(
        "--frameworks", help="comma-separated frameworks to show (default: every run's)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a framework may take to answer before the page is told",
    )
    parser.add_argument("--data-dir", help="folder holding the dataset (default: $CNN_DATA_DIR)")


def is_local(host: str) -> bool:
    """Whether ``host`` binds only this machine (a loopback name or address)."""
    if host in LOCAL:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_token(host: str, token: str | None) -> str | None:
    """The token the server requires: None for a local bind without one; for any other host
    ``token`` or a random one, and an empty one is refused."""
    if is_local(host):
        return token or None
    if token == "":
        raise UserError(
            f"--host {host} serves beyond this machine, and that needs an access token",
            "drop --token '' (a random token is made) or give --token with a secret",
        )
    return token or secrets.token_urlsafe(24)


def check_free(host: str, port: int) -> None:
    """A ``UserError`` naming the fix when ``(host, port)`` cannot be bound (in use, or not an
    address of this machine); port 0 is always free."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"cannot serve on {host}:{port} ({exc.strerror})",
                "give another --port (0 picks a free one) or another --host",
            ) from None


def main(args: argparse.Namespace) -> int:
    """Read the folder, start the workers on first use, serve until Ctrl-C."""
    import uvicorn

    from compare.engine.registry import parse_frameworks
    from compare.serve.app import make_app
    from compare.serve.folder import load_folder
    from compare.serve.workers import Worker

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a port", "use 0 to 65535")
    if args.timeout <= 0:
        raise UserError(f"--timeout {args.timeout:g} must be positive", "use for example 30")
    token = access_token(args.host, args.token)
    check_free(args.host, args.port)
    chosen = parse_frameworks(args.frameworks) if args.frameworks else None
    folder = load_folder(args.dir, chosen, args.data_dir)
    logs = Path(tempfile.mkdtemp(prefix="cnn-serve-logs-"))
    workers = {
        name: Worker(name, folder.models[name], worker_log(logs, name), timeout=args.timeout)
        for name in folder.frameworks
    }
    app = make_app(folder, workers, token)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        shown = f"[{args.host}]" if ":" in args.host else args.host
        address = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
        print(f"cnn-compare serve: {', '.join(folder.frameworks)} from {args.dir}", flush=True)
        print(f"open {address}   (Ctrl-C stops it; worker logs in {logs})", flush=True)

    async def serve() -> None:
        await asyncio.gather(server.serve(), announce())

    try:
        asyncio.run(serve())
    finally:
        for worker in workers.values():
            worker.close()
    return 0
