"""A bounded load test of ``coreperturb serve`` on 127.0.0.1: concurrent clients, mixed requests, latencies.

Usage:
    python benchmarks/serve_load.py --model models/k562 [--clients 16] [--seconds 60] [--cell-line k562]

Starts ``coreperturb serve --model MODEL --port 0`` as a subprocess bound to 127.0.0.1, warms it (one gene
ranking, which scores every candidate perturbation on that gene once in the background: minutes for K562;
the warm-up polls until it is done), then runs ``--clients`` concurrent
clients for ``--seconds`` seconds per phase (``--think``: 0 = back-to-back requests that saturate the server,
5 = a person reading each answer for about 5 s), each sending a random mix of perturbation rankings (60%), explanations
(25%) and gene rankings (15%) over a fixed pool of names, and stops by itself. Traffic goes to 127.0.0.1
only. Prints the number of requests and errors, p50 / p99 latency per endpoint, and the server's RSS at the
start and at the end of the run; then sends SIGTERM and reports the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np


def rss_mb(pid: int) -> float:
    """Resident set size of a process (MB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(model: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "coreperturb.cli", "serve", "--model-dir", str(model), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    sys.exit("serve did not start")


async def client(
    base: str,
    stop: float,
    perts: list[str],
    genes: list[str],
    out: list[tuple[str, float, int]],
    seed: int,
    think: float,
    no_gene: bool = False,
) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=120) as c:
        while time.perf_counter() < stop:
            if think > 0:
                await asyncio.sleep(rng.uniform(0.5, 1.5) * think)
            u = rng.random() * (0.85 if no_gene else 1.0)
            if u < 0.6:
                kind, url = "perturbation", f"/api/perturbations/{rng.choice(perts)}?top=20"
            elif u < 0.85:
                kind, url = (
                    "explain",
                    f"/api/explain?perturbation={rng.choice(perts)}&gene={rng.choice(genes)}",
                )
            else:
                kind, url = (
                    "gene",
                    f"/api/genes/{genes[0]}?top=20&rank_by={rng.choice(['down', 'up', 'effect'])}",
                )
            t = time.perf_counter()
            try:
                r = await c.get(url)
                status = r.status_code
            except httpx.HTTPError:
                status = -1
            out.append((kind, time.perf_counter() - t, status))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--perturbations", type=int, default=500, help="size of the pool of perturbation names")
    ap.add_argument("--no-gene", action="store_true", help="leave out gene rankings (and their warm-up)")
    ap.add_argument(
        "--think",
        default="0,5",
        help="comma-separated phases: mean seconds a client waits between requests (0 = saturate the server)",
    )
    args = ap.parse_args()
    from coreperturb._model_files import load_model
    from coreperturb.stages import candidate_perturbations

    models = load_model(args.model)
    line = models.cell_lines[0]
    rng = random.Random(0)
    perts = rng.sample(candidate_perturbations(models, line), args.perturbations)
    genes = rng.sample(list(models.readout_genes(line)), 50)
    del models
    proc, base = start(args.model)
    try:
        with httpx.Client(base_url=base, timeout=600) as c:
            t = time.perf_counter()
            while not args.no_gene and c.get(f"/api/genes/{genes[0]}?top=5").status_code == 202:
                time.sleep(2)  # scored in the background
            if not args.no_gene:
                c.get(f"/api/genes/{genes[0]}?top=5").raise_for_status()
            c.get(f"/api/perturbations/{perts[0]}?top=5").raise_for_status()
            warm = time.perf_counter() - t
        rss0 = rss_mb(proc.pid)
        phases = []
        for think in (float(x) for x in args.think.split(",")):
            out: list[tuple[str, float, int]] = []
            stop = time.perf_counter() + args.seconds
            t0 = time.perf_counter()

            async def run_all(
                think: float = think, out: list[tuple[str, float, int]] = out, stop: float = stop
            ) -> None:
                await asyncio.gather(
                    *(
                        client(base, stop, perts, genes, out, k + int(1000 * think), think, args.no_gene)
                        for k in range(args.clients)
                    )
                )

            asyncio.run(run_all())
            phases.append((think, out, time.perf_counter() - t0, rss_mb(proc.pid)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
    print(
        f"warm-up (first gene ranking over every candidate + first perturbation): {warm:.1f}s; RSS {rss0:.0f} MB"
    )
    for think, out, wall, rss in phases:
        errors = sum(1 for _, _, s in out if s != 200)
        print(
            f"\n{args.clients} clients, think time {think:g}s: {len(out)} requests in {wall:.1f}s "
            f"({len(out) / wall:.1f}/s); {errors} errors; RSS at the end {rss:.0f} MB"
        )
        for kind in ("perturbation", "explain", "gene"):
            lat = np.array([d for k, d, _ in out if k == kind])
            if len(lat):
                print(
                    f"{kind:>12}: n={len(lat)}  p50 {np.percentile(lat, 50) * 1000:.0f} ms  "
                    f"p99 {np.percentile(lat, 99) * 1000:.0f} ms  max {lat.max() * 1000:.0f} ms"
                )
    print(f"\nexit code after SIGTERM: {rc}")


if __name__ == "__main__":
    main()
