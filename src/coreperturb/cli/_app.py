"""The Typer app, its consoles and the one place where errors become one line."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer

from coreperturb._threads import adapt_threads
from coreperturb._version import __version__
from coreperturb.errors import CorePerturbError

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # plain help: full option names at any width (a rich table cuts them at 80 columns), and fast (no
    # markdown or syntax-highlighting imports before the first line prints)
    rich_markup_mode=None,
    help="coreperturb: predict gene responses to unseen perturbations from contrastive KG evidence (CORE).",
)


class _LazyConsole:
    """A rich ``Console`` made on first use: ``coreperturb --help`` does not pay for importing rich."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            # emoji codes off: a name such as FOO:x:1 prints as typed, not as an emoji
            made = Console(stderr=self._stderr, soft_wrap=self._stderr, emoji=False)
            if not self._stderr and not made.is_terminal:
                made = Console(width=200, emoji=False)
            self._console = made
        return getattr(self._console, name)


console = cast("Console", _LazyConsole(stderr=True))
out_console = cast("Console", _LazyConsole(stderr=False))

USER_ERRORS: tuple[type[BaseException], ...] = (CorePerturbError, OSError)
"""What a command reports as one ``error:`` line: the project's own errors, and the file system's (a full
disk, a missing permission). Anything else is a bug and shows its traceback with ``--debug``."""

_STATE: dict[str, Any] = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` and exit with ``code``."""
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=code)


def command(name: str | None = None) -> Callable[[F], F]:
    """Register a command whose user errors (:data:`USER_ERRORS`) become one ``error:`` line (exit 2)."""

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except USER_ERRORS as exc:
                if _STATE["debug"]:
                    raise
                fail(str(exc))
            except (typer.Exit, typer.Abort):  # click's exits are Exceptions; let them through
                raise
            except Exception as exc:
                if _STATE["debug"]:
                    raise
                fail(
                    f"internal error ({type(exc).__name__}: {exc}); this is a bug in coreperturb: rerun with "
                    "--debug for the traceback and report it",
                    code=1,
                )

        app.command(name)(run)
        return func

    return wrap


def status(message: str) -> contextlib.AbstractContextManager[object]:
    """A spinner with ``message`` while a step runs, on a terminal (elsewhere it would print nothing, so
    rich's live display is not even loaded)."""
    return console.status(message) if console.is_terminal else contextlib.nullcontext()


def imports_done() -> None:
    """Called by a command once its imports are done: the objects made so far (mostly modules) leave the
    cyclic garbage collector's generations, so that its collections while the command runs walk only what
    the command made (about 70 ms less for a one-pair ``predict``). They were never garbage to collect."""
    gc.freeze()


def use_threads(threads: int | None) -> int:
    """Keep this process's OpenMP / BLAS pools within the thread allotment (``threads``, or the default,
    re-evaluated during long work: :func:`coreperturb._threads.adapt_threads`)."""
    return adapt_threads(threads)


def show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Warnings as one plain line on stderr (no file / line / source echo)."""
    from rich.markup import escape

    console.print(f"[yellow]warning:[/] {escape(str(message))}")


def _version(value: bool) -> None:  # noqa: FBT001 (a typer parameter callback: it is given the value)
    if value:
        out_console.print(__version__)
        raise typer.Exit()


@app.callback()
def main(
    *,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of every error instead of one line.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True),
    ] = False,
) -> None:
    """CORE: Contrastive Organization of Relational Evidence."""
    _STATE["debug"] = debug
    warnings.showwarning = show_warning
    try:
        use_threads(None)  # stay within the CPU allotment unless a command says otherwise
    except CorePerturbError as exc:
        fail(str(exc))
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
