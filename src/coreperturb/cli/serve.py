"""``coreperturb serve``: the web explorer and JSON API over a fitted model."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from coreperturb._defaults import GENE_JOBS, SERVE_PORT
from coreperturb.cli import _options as o
from coreperturb.cli._app import command, console, out_console, status, use_threads


@command()
def serve(
    *,
    model_dir: o.ModelDirOpt = None,
    model: o.OldModelDirOpt = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine (others need --token).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 = any free port).")] = SERVE_PORT,
    predictions: Annotated[
        Path | None,
        typer.Option(
            help="A prediction file of `coreperturb predict` to read rankings from instead of scoring."
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="COREPERTURB_SERVE_TOKEN",
            help="Bearer token every request must carry (required for a host other than 127.0.0.1; or "
            "$COREPERTURB_SERVE_TOKEN). Pages take it once as /?token=TOKEN.",
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="A Host header to answer besides the bound address and localhost (the name users type, e.g. "
            "explorer.lab.org). Repeatable; others are refused (DNS rebinding).",
        ),
    ] = None,
    max_gene_jobs: Annotated[
        int,
        typer.Option(min=1, help="Gene rankings computed at once; more answer 429 until one ends."),
    ] = GENE_JOBS,
    threads: o.ThreadsOpt = None,
) -> None:
    """Serve a web explorer and JSON API over a fitted model (pip install 'coreperturb[serve]').

    Pages: / (search with autocomplete), /perturbation/NAME (its specific responders up and down, beside
    the likeliest-DE list, and a plot of excess against prior), /gene/NAME (the perturbations that lower or
    raise it), /explain?perturbation=P&gene=G (the evidence). JSON: /api/perturbations/NAME?top=N&rank_by=
    excess|effect|p_de|up|down, /api/genes/NAME?top=N&rank_by=down|up|excess|effect|p_de, /api/explain?perturbation=P&gene=G,
    /api/search?q=..., /api/health, ?format=csv on the rankings; the schema is at /openapi.json. Every response
    carries security headers (a Content-Security-Policy, no framing, no sniffing); only the bound address,
    localhost and --allow-host names are answered; at most --max-gene-jobs gene rankings run at once, and one
    nobody asks about for 2 minutes is cancelled. Stops cleanly on Ctrl-C / SIGTERM.
    """
    from rich.markup import escape

    from coreperturb.serve import open_service
    from coreperturb.serve._app import check_host
    from coreperturb.serve._app import serve as run_server

    # one BLAS / OpenMP thread per answer: answers run one at a time beside the server's own threads, and
    # OpenMP workers spinning on a busy core slow every answer down
    use_threads(threads or 1)
    path = o.model_dir(model_dir, model)
    check_host(host, token)
    with status(f"loading {path}"):
        service = open_service(path, predictions, max_gene_jobs=max_gene_jobs)

    def ready(url: str) -> None:
        out_console.print(escape(f"serving {path} at {url}  (Ctrl-C or SIGTERM stops it)"))
        sys.stdout.flush()

    # uvicorn shuts down gracefully on SIGINT / SIGTERM and then re-raises the signal to the handler it found:
    # make that one a no-op, so that a clean shutdown exits 0
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    run_server(
        service, host=host, port=port, token=token, on_ready=ready, allow_hosts=tuple(allow_host or ())
    )
    console.print("serve stopped")
    # answers still queued in the request threads are abandoned (serve writes no files): do not wait for them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
