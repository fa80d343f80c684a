"""Every ``bash`` and ``python`` block of the docs outside docs/tutorials (the how-to guides, the reference, the
results page) runs in CI on the synthetic data, or says why not.

A page's blocks run in order, as one script, in a fresh directory that holds the synthetic benchmark and the
small user files the guides name (``edges.tsv``, ``run.toml``, ``cells.h5ad``, ...); a page that uses a model
it does not fit itself says so with ``<!-- docs-test: given: models/k562 -->``, and a fitted synthetic model
is put there. The real names in the text are mapped onto the synthetic benchmark by :data:`NAMES`
(``../shared/data/kg`` → the synthetic KG, ``k562`` → ``synth_a``, ``TFRC`` → an unscreened synthetic gene,
...), so a block runs as the reader would type it. A block that cannot run here (the 4-line benchmark, a
GPU server, a network install) is preceded by ``<!-- docs-test: skip: REASON -->``; the reason is required.
The tutorials have their own test (tests/test_docs.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coreperturb.data import write_synthetic

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if "tutorials" not in p.parts)
BLOCK = re.compile(
    r"(?P<before>[^\n]*)\n```(?P<lang>bash|python|sh|shell|console|py)\n(?P<body>.*?)^```", re.S | re.M
)
SKIP = re.compile(r"<!--\s*docs-test:\s*skip:\s*(?P<reason>\S.*?)\s*-->")
GIVEN = re.compile(r"<!--\s*docs-test:\s*given:\s*(?P<path>\S+)\s*-->")

NAMES: tuple[tuple[str, str], ...] = (
    ("../shared/data/perturbqa", "syn/data"),
    ("../shared/data/kg", "syn/kg"),
    ("../shared/data/lincs", "syn/lincs"),
    ("k562,rpe1,hepg2,jurkat", "synth_a,synth_b"),
    ("k562,rpe1", "synth_a,synth_b"),
    ("k562", "synth_a"),
    ("rpe1", "synth_b"),
    # unscreened perturbations of synth_a (its test split) and readout genes of the sandbox's benchmark
    ("FTH1", "G0002"),
    ("TFRC", "G0007"),
    ("PSMA1", "G0011"),
    ("CAPZB", "G0000"),
    ("HSPA1A", "G0141"),
    ("HBG2", "G0106"),
    ("CFL1", "G0168"),
    ("imatinib", "DB90001"),
    ("MYCPD-7", "DB90002"),
)
"""Real names in the docs → their synthetic stand-ins (applied in this order, whole words)."""


def blocks(page: Path) -> list[tuple[str, str, str | None]]:
    """``(language, body, skip reason or None)`` of each runnable block of a page, in order."""
    out = []
    for m in BLOCK.finditer(page.read_text()):
        skip = SKIP.search(m.group("before"))
        out.append((m.group("lang"), m.group("body"), skip.group("reason") if skip else None))
    return out


def synthetic(text: str) -> str:
    """The block with the real names replaced by the synthetic ones (:data:`NAMES`)."""
    for real, synth in NAMES:
        text = re.sub(rf"(?<![\w.-]){re.escape(real)}(?![\w-])", synth, text)
    return text


def script_of(page: Path) -> str:
    parts = ["set -euo pipefail"]
    for lang, body, reason in blocks(page):
        if reason is not None:
            continue
        body = synthetic(body)
        if lang in ("python", "py"):
            parts.append(f"{sys.executable} - <<'PYEOF'\n{body}PYEOF")
        else:
            # `pip install` lines document the extras (tests/test_packaging checks they exist); not run here
            parts.append("\n".join(line for line in body.splitlines() if not line.startswith("pip install")))
    return "\n".join(parts) + "\n"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic benchmark, a fitted model (for pages that are given one) and the user files the guides
    name."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    root = tmp_path_factory.mktemp("docs-sandbox")
    env = _env(root)

    def run(*args: str) -> None:
        subprocess.run(["coreperturb", *args], cwd=root, env=env, check=True, capture_output=True)

    # the synthetic benchmark at half the default size (the same layout; the pages run twice as fast)
    write_synthetic(root / "syn", seed=0, n_genes=200, n_drugs=30, readouts_per_perturbation=60)
    run(
        "fit",
        "--data-dir",
        "syn/data",
        "--kg-dir",
        "syn/kg",
        "--cell-lines",
        "synth_a",
        "--out",
        "given-model",
    )
    edges = "G0001\tG0002\nG0003\tG0004\nG0005\tG0006\nG0300\tG0012\n"
    (root / "edges.tsv").write_text(edges)
    (root / "string_edges.tsv").write_text(edges)
    (root / "h.all.gmt").write_text("HALLMARK_X\tna\tG0001\tG0002\tG0003\nHALLMARK_Y\tna\tG0004\tG0005\n")
    (root / "more_genes.txt").write_text("G0011\nG0012\n")
    shutil.copy(root / "syn/data/synth_a-de.csv", root / "screen.csv")
    shutil.copy(root / "syn/data/synth_b-de.csv", root / "my_screen.csv")
    shutil.copy(root / "syn/data/drugs-de.csv", root / "my_drug_screen.csv")
    structures = (root / "syn/kg/drug_structures.tsv").read_text().splitlines()
    (root / "my_compounds.csv").write_text("\n".join(s.replace("\t", ",") for s in structures) + "\n")
    (root / "run.toml").write_text(
        'data_dir = "syn/data"\nkg_dir = "syn/kg"\ncell_lines = "synth_a"\nmethods = "gene_frequency,core_voting"\n'
    )
    # single cells as in docs/tutorials/screen.md: 12 knockdowns (obs "guide" and "gene") and control cells
    rng = np.random.default_rng(0)
    perts = ["non-targeting"] * 200 + [f"G{300 + i:04d}" for i in range(12) for _ in range(40)]
    x = rng.poisson(5, size=(len(perts), 60)).astype(float)
    for i in range(12):
        m = np.array(perts) == f"G{300 + i:04d}"
        x[np.ix_(m, [i, i + 12])] = rng.poisson([20.0, 1.0], size=(int(m.sum()), 2))
    obs = pd.DataFrame({"guide": perts, "gene": perts}, index=[f"c{i}" for i in range(len(perts))])
    var = pd.DataFrame(index=[f"G{j:04d}" for j in range(60)])
    ad.AnnData(X=x, obs=obs, var=var).write_h5ad(root / "cells.h5ad")
    return root


def _env(root: Path) -> dict[str, str]:
    env = {**os.environ, "COREPERTURB_CACHE_DIR": str(root / "cache"), "PYTHONUNBUFFERED": "1"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def test_every_block_runs_or_says_why_not() -> None:
    assert len(PAGES) >= 10
    for page in PAGES:
        for lang, body, reason in blocks(page):
            assert reason is None or len(reason) >= 10, f"{page.name}: a skip needs a reason"
            assert body.strip(), f"{page.name}: an empty {lang} block"


def test_the_names_map_onto_the_synthetic_benchmark() -> None:
    assert synthetic("--cell-lines k562 --kg-dir ../shared/data/kg models/k562") == (
        "--cell-lines synth_a --kg-dir syn/kg models/synth_a"
    )
    assert synthetic("TFRC,FTH1 FTH1L MYCPD-7") == "G0007,G0002 FTH1L DB90002"


RUNNABLE = [p for p in PAGES if any(r is None for _, _, r in blocks(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT / "docs")) for p in RUNNABLE])
def test_page_blocks_run(page: Path, sandbox: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(sandbox, work, symlinks=True, ignore=shutil.ignore_patterns("given-model"))
    for given in GIVEN.finditer(page.read_text()):
        target = work / synthetic(given.group("path"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(sandbox / "given-model", target)
    res = subprocess.run(
        ["bash", "-c", script_of(page)], cwd=work, env=_env(work), capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, f"{page.name}:\n{script_of(page)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
