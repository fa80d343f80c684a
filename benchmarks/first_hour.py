"""A newcomer's first commands, timed: `--help`, a one-pair predict and one gene x every candidate.

Usage:
    python benchmarks/first_hour.py --model DIR [--gene HBG2] [--pair TFRC,HBG2] [--repeat 3]
                                    [--baseline GIT_REF [--baseline-model DIR]]

Each command runs as a child process (``os.wait4``: wall seconds, CPU seconds and peak RSS of that process
alone); the best of --repeat runs is reported. The gene query is the explorer's and the README's flagship
question, `predict --genes GENE --perturbations all --per gene --rank-by down --top 50`.

--baseline GIT_REF runs the same commands with the code of GIT_REF (a ``git worktree`` on PYTHONPATH) in the
same run, interleaved with the current code, prints both and the ratios, and checks that the gene query's
output files are identical. --baseline-model is the same fit saved in the format the baseline reads (a
model of format 3 re-saved from a format 2 one with ``save_model(load_model(OLD), NEW)`` holds the same
numbers); by default both codes read --model.

Children run with Python's bytecode cache on (``PYTHONDONTWRITEBYTECODE`` unset), as on a user's machine,
so that the figures do not include recompiling every module on every start. Ratios measured in one run on a quiet machine are the figure to quote; absolute
seconds move with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_genome_wide import baseline_env, run_child


def commands(model: Path, gene: str, pair: tuple[str, str], out: Path) -> dict[str, list[str]]:
    """The timed commands (argument lists after ``python -m coreperturb.cli``)."""
    return {
        "--help": ["--help"],
        "one pair": ["predict", "--model-dir", str(model), "--perturbations", pair[0], "--genes", pair[1],
                     "--out", str(out / "pair.csv")],
        f"{gene} x all": ["predict", "--model-dir", str(model), "--genes", gene, "--perturbations", "all",
                          "--per", "gene", "--rank-by", "down", "--top", "50", "--out", str(out / "gene.csv")],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a model directory (coreperturb fit)")
    ap.add_argument("--gene", default="HBG2")
    ap.add_argument("--pair", default="TFRC,HBG2", help="PERTURBATION,GENE")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", default=None, help="a git ref to time beside the current code")
    ap.add_argument("--baseline-model", type=Path, default=None, help="the model the baseline reads")
    args = ap.parse_args()
    p, g = args.pair.split(",")
    pair = (p, g)
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as cleanup:
        tmp = Path(tmp_name)
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        codes: dict[str, dict[str, str] | None] = {"current": None}
        models = {"current": args.model}
        if args.baseline:
            base_name = f"baseline {args.baseline}"
            codes = {base_name: baseline_env(args.baseline, tmp), "current": None}
            repo = Path(__file__).resolve().parents[1]
            # the worktree is removed again, so that no entry of it stays in the repository
            cleanup.callback(
                subprocess.run,
                ["git", "-C", str(repo), "worktree", "remove", "--force", str(tmp / "baseline")],
            )
            models[base_name] = args.baseline_model or args.model
        best: dict[tuple[str, str], tuple[float, float, float]] = {}
        for _ in range(args.repeat):
            for code, env in codes.items():
                out = tmp / code.replace(" ", "_")
                out.mkdir(exist_ok=True)
                for name, argv in commands(models[code], args.gene, pair, out).items():
                    wall, cpu, rss, rc = run_child([sys.executable, "-m", "coreperturb.cli", *argv], env=env)
                    if rc != 0:
                        raise SystemExit(f"{code}: {name} failed (exit {rc})")
                    key = (code, name)
                    if key not in best or wall < best[key][0]:
                        best[key] = (wall, cpu, rss)
        print(f"{'code':<28} {'command':<14} {'wall s':>7} {'CPU s':>7} {'peak GB':>8}")
        for (code, name), (wall, cpu, rss) in best.items():
            print(f"{code:<28} {name:<14} {wall:7.2f} {cpu:7.2f} {rss:8.2f}")
        if args.baseline:
            base = next(iter(codes))
            print()
            for name in commands(args.model, args.gene, pair, tmp):
                b, c = best[(base, name)], best[("current", name)]
                print(f"{name:<14} wall {b[0] / c[0]:5.1f}x faster, peak memory {b[2]:.2f} -> {c[2]:.2f} GB")
            same = filecmp.cmp(
                tmp / base.replace(" ", "_") / "gene.csv", tmp / "current" / "gene.csv", shallow=False
            )
            print(f"gene query output identical to the baseline's: {same}")


if __name__ == "__main__":
    main()
