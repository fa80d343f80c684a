"""Command-line interface: one small module per command over the library (parse → config → one call →
render). Errors become one line in :func:`coreperturb.cli._app.command`."""

from __future__ import annotations

import gc
import signal
import sys

from coreperturb.cli import (  # noqa: F401  (each module registers its command)
    benchmark,
    design,
    explain,
    fit,
    llm_server,
    predict,
    prepare,
    report,
    reseal,
    serve,
    synthetic,
)
from coreperturb.cli._app import app


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM ends a command as Ctrl-C does: context managers run, so no temporary file is left behind."""
    raise SystemExit(128 + signum)


def run() -> None:  # pragma: no cover - console-script shim
    """The ``coreperturb`` entry point."""
    signal.signal(signal.SIGTERM, _terminate)
    gc.freeze()  # the CLI's own modules: never garbage (see _app.imports_done)
    try:
        app()
    finally:
        # The process ends here. Freezing its objects spares the interpreter a last cyclic collection over all of
        # them at exit (about 0.1 s after a loaded model); memory goes back to the system as at any exit, and
        # atexit handlers, context managers and reference-counted clean-up still run.
        gc.freeze()
    sys.exit(0)


__all__ = ["app", "run"]
