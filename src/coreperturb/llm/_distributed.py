"""Scale-out: run the LLM calls of a scoring run over a Ray Data dataset (``pip install 'coreperturb[ray]'``).

Only the backend calls move to Ray: caching, resume, scoring and calibration stay in the driver, so a Ray
run writes the same result store and produces the same predictions as a local run on the same inputs.
Each Ray worker builds its own backend from the (picklable) :class:`LLMSettings`, e.g. an ``openai`` backend
pointed at a vLLM deployment; voting stays vectorised in-process.

Multi-node: start a cluster (``ray start --head`` on one node, ``ray start --address HEAD:6379`` on the
others) and pass ``--executor ray --ray-address HEAD:6379``; point ``--base-url`` at a vLLM server (or a
load balancer over several) that every node can reach.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coreperturb.errors import CorePerturbError
from coreperturb.llm._backends import Completion, LLMSettings, Message, SamplingParams, make_backend


class _BatchScorer:
    """Ray Data callable class: one backend per worker, a batch of prompts per call."""

    def __init__(self, settings: LLMSettings, params: dict[str, Any]) -> None:
        self.backend = make_backend(settings)
        self.params = SamplingParams(**params)

    async def _all(self, prompts: list[list[Message]]) -> list[tuple[str, str]]:
        sem = asyncio.Semaphore(max(1, self.backend.concurrency))

        async def one(m: list[Message]) -> tuple[str, str]:
            async with sem:
                try:
                    c = await self.backend.chat(m, self.params)
                    return json.dumps(c.to_json()), ""
                except Exception as exc:
                    return "", f"{type(exc).__name__}: {exc}"[:500]

        try:
            return await asyncio.gather(*(one(m) for m in prompts))
        finally:
            await self.backend.aclose()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        prompts = [json.loads(m) for m in batch["messages"]]
        res = asyncio.run(self._all(prompts))
        return {"i": batch["i"], "completion": [r[0] for r in res], "error": [r[1] for r in res]}


@dataclass(frozen=True)
class RayExecutor:
    """Runs backend calls on Ray workers through Ray Data.

    Attributes:
        settings: How each worker builds its backend.
        num_workers: Concurrent Ray workers (each with the backend's own concurrency).
        batch_size: Prompts per Ray Data batch.
        address: Ray cluster address (``None`` = start or join a local one).
    """

    settings: LLMSettings
    num_workers: int = 2
    batch_size: int = 64
    address: str | None = None

    def complete(
        self, prompts: Sequence[Sequence[Message]], params: SamplingParams
    ) -> list[Completion | str]:
        """Answers (or error strings) aligned with ``prompts``."""
        if not prompts:
            return []
        try:
            import ray
            import ray.data
        except ImportError:
            raise CorePerturbError("the ray executor needs Ray: pip install 'coreperturb[ray]'") from None
        if not ray.is_initialized():
            ray.init(
                address=self.address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False
            )
        ds = ray.data.from_items([{"i": i, "messages": json.dumps(list(m))} for i, m in enumerate(prompts)])
        out = ds.map_batches(
            _BatchScorer,
            fn_constructor_kwargs={"settings": self.settings, "params": params.as_dict()},
            batch_size=self.batch_size,
            concurrency=self.num_workers,
            batch_format="numpy",
        ).take_all()
        res: list[Completion | str] = ["missing result"] * len(prompts)
        for row in out:
            i = int(row["i"])
            res[i] = (
                Completion.from_json(json.loads(str(row["completion"])))
                if row["completion"]
                else str(row["error"])
            )
        return res


__all__ = ["RayExecutor"]
