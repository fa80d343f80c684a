"""``coreperturb reseal-model``: accept a deliberate edit of a model directory's model.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coreperturb.cli._app import command


@command("reseal-model")
def reseal_model_cmd(
    *,
    model_dir: Annotated[
        Path, typer.Argument(help="A model directory whose model.json you edited on purpose.")
    ],
    note: Annotated[str, typer.Option(help="Why it was edited (recorded in model.json).")] = "",
) -> None:
    """Accept a deliberate edit of MODEL_DIR/model.json (e.g. a threshold): record it and its new digest.

    A model directory refuses to load when model.json no longer matches its content_sha256, so that an
    accidental edit never changes predictions silently. After a deliberate edit, this writes the new digest
    and adds an entry (time, --note) to model.json's "resealed" list. The other files must be unchanged.
    """
    from coreperturb._model_files import reseal_model
    from coreperturb.cli._render import say

    digest = reseal_model(model_dir, note)
    say(f"resealed {model_dir / 'model.json'} (content sha256 {digest[:12]}…)")
