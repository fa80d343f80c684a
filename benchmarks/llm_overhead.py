"""Client/pipeline overhead of the LLM runner against direct calls to the same backend.

Usage:
    python benchmarks/llm_overhead.py [--n 400] [--latency 0.05] [--embedded 40]

1. HTTP: the bundled OpenAI-compatible test server answers after ``--latency`` seconds (simulated model time).
   The same prompts are sent (a) directly with a bare ``httpx.AsyncClient`` at the same concurrency and
   (b) through :class:`coreperturb.llm.LLMRunner` (OpenAI client, retries, SQLite cache and result store,
   scoring). Overhead = (runner wall time − direct wall time) / direct wall time.
2. Embedded: SmolLM2-135M via xllamacpp, ``handle_chat_completions`` called in a plain loop vs through the
   runner, on ``--embedded`` realistic CORE prompts (skipped if the model is not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from coreperturb.data import load_perturbqa, write_synthetic
from coreperturb.evidence import retrieve_evidence
from coreperturb.evidence._pool import ObservationPool
from coreperturb.graph import build_kg
from coreperturb.llm import LLMCache, LLMSettings, SamplingParams, make_backend
from coreperturb.llm._prompts import PromptBuilder
from coreperturb.llm._runner import LLMRunner


def prompts(n: int, tmp: Path) -> list[list[dict[str, str]]]:
    """Realistic CORE prompts rendered from the synthetic benchmark."""
    paths = write_synthetic(tmp / "s", n_genes=300, cell_lines=("synth_a",))
    table = load_perturbqa(paths.data_dir, paths.cell_lines, ("de",))
    kg = build_kg(paths.kg_dir)
    train, test = table.split("train"), table.split("test").head(n)
    pool = ObservationPool.from_frame(train)
    ev, sims = retrieve_evidence(kg, test, pool)
    return PromptBuilder(kg, pool).render("core", "de", test, ev, sims)


async def direct_http(base_url: str, msgs: list[list[dict[str, str]]], concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    p = SamplingParams()
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

        async def one(m: list[dict[str, str]]) -> None:
            async with sem:
                r = await client.post(
                    "/chat/completions",
                    json={"model": "fake", "messages": m, "max_tokens": p.max_tokens, "temperature": 0,
                          "logprobs": True, "top_logprobs": p.top_logprobs},
                )  # fmt: skip
                r.json()

        t = time.perf_counter()
        await asyncio.gather(*(one(m) for m in msgs))
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--embedded", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        msgs = prompts(args.n, tmp)
        keys = [f"q{i}" for i in range(len(msgs))]
        # the server runs in its own process so that it does not share the client's interpreter (GIL)
        port = 18000 + os.getpid() % 1000
        srv = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.doubles.fake_server",
                "--port",
                str(port),
                "--latency",
                str(args.latency),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__)
            .resolve()
            .parents[1],  # the fake server is a test double: run from the checkout
        )
        try:
            assert srv.stdout is not None
            srv.stdout.readline()  # "serving ..."
            base_url = f"http://127.0.0.1:{port}/v1"
            asyncio.run(direct_http(base_url, msgs[:20], args.concurrency))  # warm-up
            t_direct = asyncio.run(direct_http(base_url, msgs, args.concurrency))
            backend = make_backend(
                LLMSettings(backend="openai", base_url=base_url, model="fake", concurrency=args.concurrency)
            )
            _, st = LLMRunner(backend, LLMCache(tmp / "c.sqlite")).run("u", "m", keys, msgs, "t")
        finally:
            srv.terminate()
        print(
            f"HTTP ({len(msgs)} prompts, {args.latency * 1000:.0f} ms simulated model time, concurrency "
            f"{args.concurrency}): direct {t_direct:.2f}s, runner {st.wall_seconds:.2f}s, overhead "
            f"{100 * (st.wall_seconds - t_direct) / t_direct:+.1f}%"
        )
        if args.embedded:
            # two fresh model instances: llama.cpp keeps a prompt cache, so reusing one would favour the second pass
            try:
                direct_backend = make_backend(LLMSettings(backend="embedded"))
                emb = make_backend(LLMSettings(backend="embedded"))
            except Exception as exc:
                print(f"embedded: skipped ({exc})")
                return
            sub = msgs[: args.embedded]
            server = direct_backend._server  # type: ignore[attr-defined]
            body = {"max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": 20}
            t = time.perf_counter()
            for m in sub:
                server.handle_chat_completions({"messages": m, **body})
            t_direct = time.perf_counter() - t
            _, st = LLMRunner(emb, LLMCache(tmp / "e.sqlite")).run("u", "m", keys[: len(sub)], sub, "t")
            print(
                f"embedded SmolLM2-135M ({len(sub)} prompts): direct {t_direct:.2f}s, runner "
                f"{st.wall_seconds:.2f}s, overhead {100 * (st.wall_seconds - t_direct) / t_direct:+.1f}%; "
                f"runner time outside backend calls {st.wall_seconds - st.backend_seconds:.3f}s "
                f"({100 * (st.wall_seconds - st.backend_seconds) / st.backend_seconds:.2f}% of backend time)"
            )


if __name__ == "__main__":
    main()
