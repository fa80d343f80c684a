"""``coreperturb llm-server``: the bundled GGUF models behind a local OpenAI-compatible HTTP server.

llama.cpp's HTTP server, as built into the ``xllamacpp`` wheel, serves ``/v1/chat/completions`` (with
token log-probabilities) on the CPU. Binding is to 127.0.0.1 unless asked otherwise; SIGINT and SIGTERM stop
it cleanly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coreperturb.errors import CorePerturbError
from coreperturb.llm.backends import resolve_gguf


@dataclass(frozen=True)
class ServerInfo:
    """A running server: its OpenAI base URL and the model it serves."""

    base_url: str
    model: str
    path: Path


def start_server(
    model: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    n_ctx: int = 4096,
    threads: int | None = None,
    parallel: int = 1,
) -> tuple[Any, ServerInfo]:
    """Start llama.cpp's HTTP server in this process (``port`` 0 picks a free port).

    Returns:
        The server handle (keep a reference: the server stops when it is garbage-collected) and its info.

    Raises:
        CorePerturbError: ``xllamacpp`` or the model is missing, or the server did not start.
    """
    try:
        import xllamacpp
    except ImportError:
        raise CorePerturbError("llm-server needs xllamacpp: pip install 'coreperturb[llm]'") from None
    path = resolve_gguf(model)
    p = xllamacpp.CommonParams()
    p.model.path = str(path)
    p.n_ctx = n_ctx
    p.n_parallel = parallel
    n = threads or os.cpu_count() or 1
    p.cpuparams.n_threads = n
    p.cpuparams_batch.n_threads = n
    p.hostnames = [host]
    p.port = port
    p.warmup = False
    with contextlib.suppress(AttributeError, TypeError):
        p.verbosity = -1
    try:
        server = xllamacpp.Server(p)
    except Exception as exc:  # the C++ server raises plain RuntimeErrors (port in use, bad file)
        raise CorePerturbError(f"llm-server could not start on {host}:{port}: {exc}") from None
    addr = str(getattr(server, "listening_address", "") or f"http://{host}:{port}")
    return server, ServerInfo(base_url=addr.rstrip("/") + "/v1", model=path.stem, path=path)


def serve_until_signal(
    model: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    n_ctx: int = 4096,
    threads: int | None = None,
    parallel: int = 1,
    on_ready: Callable[[ServerInfo], None] | None = None,
) -> int:
    """Run the server until SIGINT or SIGTERM; returns the signal number that stopped it."""
    stop = threading.Event()
    got: dict[str, int] = {}

    def handler(signum: int, _frame: object) -> None:
        got["signal"] = signum
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server, info = start_server(model, host, port, n_ctx, threads, parallel)
        if on_ready is not None:
            on_ready(info)
        while not stop.wait(0.5):
            pass
        del server
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return got.get("signal", 0)


__all__ = ["ServerInfo", "serve_until_signal", "start_server"]
