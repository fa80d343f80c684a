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

from coreperturb._defaults import LLM_SERVER_PORT
from coreperturb._deprecation import keyword_options
from coreperturb.errors import CorePerturbError
from coreperturb.llm._backends import resolve_gguf


@dataclass(frozen=True)
class ServerInfo:
    """A running server: its OpenAI base URL and the model it serves."""

    base_url: str
    model: str
    path: Path


@keyword_options
def start_server(
    model: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = LLM_SERVER_PORT,
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


def _serve_child(args: tuple[Any, ...], queue: Any) -> None:
    """The server process: start llama.cpp, report its info (or the error text), then serve until killed.

    Ctrl-C reaches the whole process group; the parent owns the signals and stops this process itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        server, info = start_server(*args)
    except CorePerturbError as exc:
        queue.put(str(exc))
        return
    queue.put(info)
    threading.Event().wait()
    del server  # pragma: no cover - the parent terminates this process


@keyword_options
def serve_until_signal(
    model: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = LLM_SERVER_PORT,
    n_ctx: int = 4096,
    threads: int | None = None,
    parallel: int = 1,
    on_ready: Callable[[ServerInfo], None] | None = None,
) -> int:
    """Run the server until SIGINT or SIGTERM; returns the signal number that stopped it.

    llama.cpp runs in a child process, so that no handler it installs in its threads can take a signal meant
    for this process: the handlers here are installed before the child starts, and stop it on either signal.

    Raises:
        CorePerturbError: The server could not start, or its process died.
    """
    import multiprocessing
    import queue as queues

    stop = threading.Event()
    got: dict[str, int] = {}

    def handler(signum: int, _frame: object) -> None:
        got["signal"] = signum
        stop.set()

    resolve_gguf(model)  # a missing model stops here, before a process starts
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    ctx = multiprocessing.get_context("spawn")
    inbox = ctx.Queue()
    proc = ctx.Process(
        target=_serve_child, args=((model, host, port, n_ctx, threads, parallel), inbox), daemon=True
    )
    try:
        proc.start()
        ready = False
        while not stop.wait(0.2):
            if not ready:
                try:
                    msg = inbox.get_nowait()
                except queues.Empty:
                    msg = None
                if isinstance(msg, str):
                    raise CorePerturbError(msg)
                if isinstance(msg, ServerInfo):
                    ready = True
                    if on_ready is not None:
                        on_ready(msg)
            if not proc.is_alive():
                raise CorePerturbError(f"llm-server: the server process exited (code {proc.exitcode})")
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        for s, h in old.items():
            signal.signal(s, h)
    return got.get("signal", 0)


__all__ = ["ServerInfo", "serve_until_signal", "start_server"]
