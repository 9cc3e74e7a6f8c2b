"""The server's side of the framework workers: start on first use, keep warm, restart the
dead, never hang.

Each framework in the explorer has one ``Worker``: a ``compare.serve.worker`` process started
with the framework's environment (``compare.engine.launch.child_env``) the first time a
request needs it. Requests to one worker go one at a time; ``Worker.batch`` gathers the
drawing updates that arrive while the worker is busy into one batch (one forward pass for
every client drawing at once). A worker that has died (killed, out of memory) is started
afresh by the next request, whose answer says so (``restarted``). A request that takes longer
than its timeout is answered with a message: the worker is stopped (its late answer would be
read as the next one's) and the next request starts a fresh one. The other frameworks carry
on meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compare.engine.launch import child_env
from compare.serve import wire

START_TIMEOUT = 300.0  # seconds a worker may take to import its framework and load the model
MAX_BATCH = 32  # drawing updates answered by one forward pass


class WorkerError(RuntimeError):
    """A request that got no answer: the worker died, took too long, or failed to start."""


def _read_exactly(fd: int, size: int, deadline: float) -> bytes:
    data = bytearray()
    while len(data) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        readable, _, _ = select.select([fd], [], [], left)
        if not readable:
            raise TimeoutError
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


@dataclass
class Worker:
    """One framework's worker process, for the model in ``weights``; its output in ``log``."""

    framework: str
    weights: Path
    log: Path
    threads: int | None = None
    timeout: float = 30.0
    proc: subprocess.Popen | None = None
    starts: int = 0  # processes started so far: 2 or more means it was restarted
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _queue: asyncio.Queue | None = None
    _loop: asyncio.AbstractEventLoop | None = None  # the loop whose task serves the queue
    _task: asyncio.Task | None = None  # that task (held: the loop keeps only a weak reference)

    # ------------------------------------------------------------------ the process

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as output:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "compare.serve.worker", self.framework, str(self.weights)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=output,
                env=child_env(self.framework, self.threads),
            )  # no death signal: it would follow the thread that started it, not the server;
            # a worker ends when its standard input does, so with the server
        self.starts += 1
        try:
            header, _ = self._receive(time.monotonic() + START_TIMEOUT)
        except (TimeoutError, EOFError):
            self.close()
            raise WorkerError(
                f"the {self.framework} worker did not start (its output: {self.log})"
            ) from None
        if not header.get("ready"):
            self.close()
            raise WorkerError(f"the {self.framework} worker did not start: {header}")

    def _receive(self, deadline: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        (size,) = wire.LENGTH.unpack(_read_exactly(fd, wire.LENGTH.size, deadline))
        return wire.decode(_read_exactly(fd, size, deadline))

    def close(self) -> None:
        """Stop the process (if any); the next request starts a fresh one."""
        if self.proc is not None:
            self.proc.kill()  # it holds nothing to save: a model loaded from its weight file
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            self.proc = None

    def pid(self) -> int | None:
        return self.proc.pid if self.alive() and self.proc is not None else None

    # ------------------------------------------------------------------ one request

    def request(
        self, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Send one request and wait for its answer (blocking; one at a time). The answer's
        header gets ``restarted`` when this request had to start the worker again."""
        with self._lock:
            restarted = False
            if not self.alive():
                restarted = self.starts > 0
                self.close()
                self._start()
            assert self.proc is not None and self.proc.stdin is not None
            try:
                self.proc.stdin.write(wire.encode(header, arrays))
                self.proc.stdin.flush()
                answer, out = self._receive(time.monotonic() + self.timeout)
            except TimeoutError:
                self.close()
                raise WorkerError(
                    f"{self.framework} took longer than {self.timeout:g} s; its worker was "
                    "stopped and starts again on the next request"
                ) from None
            except (EOFError, BrokenPipeError, OSError):
                self.close()
                raise WorkerError(
                    f"the {self.framework} worker died; it starts again on the next request"
                ) from None
            answer["restarted"] = restarted
            return answer, out

    # ------------------------------------------------------------------ batched updates

    async def infer(self, image: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Logits and feature maps of one image ``(H, W, C)``, batched with the other
        clients' images that wait for this worker meanwhile."""
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:  # first use, or a new server loop
            self._queue, self._loop = asyncio.Queue(), loop
            self._task = loop.create_task(self._serve_batches(self._queue))
        done: asyncio.Future = loop.create_future()
        await self._queue.put((image, done))
        return await done

    async def _serve_batches(self, queue: asyncio.Queue) -> None:
        while True:
            waiting = [await queue.get()]
            while len(waiting) < MAX_BATCH and not queue.empty():
                waiting.append(queue.get_nowait())
            images = np.stack([image for image, _ in waiting])  # (B, H, W, C)
            try:
                answer, out = await asyncio.to_thread(
                    self.request, {"op": "infer"}, {"images": images}
                )
            except Exception as exc:  # noqa: BLE001 - every waiting client hears of it; serving goes on
                message = (
                    str(exc) if isinstance(exc, WorkerError) else f"{type(exc).__name__}: {exc}"
                )
                for _, done in waiting:
                    if not done.done():
                        done.set_exception(WorkerError(message))
                continue
            for k, (_, done) in enumerate(waiting):
                if not done.done():
                    done.set_result((answer, {name: value[k] for name, value in out.items()}))
