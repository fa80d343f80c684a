"""Score many prompts with bounded concurrency, the response cache and the resumable result store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from coreperturb._util import Progress
from coreperturb.llm._backends import Backend, Completion, LLMError, Message, SamplingParams
from coreperturb.llm._cache import LLMCache, ResultRow, prompt_key
from coreperturb.llm._distributed import RayExecutor
from coreperturb.llm._scoring import VERBAL_SUFFIX, p_yes_from_logprobs, score_completion

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    """Counters of one scoring run (printed at the end of a benchmark).

    Attributes:
        n_queries: Queries asked for.
        n_resumed: Already in the result store (no work at all).
        n_cache_hits: Answers taken from the response cache.
        n_calls: Backend calls made.
        n_errors: Rows that ended with an error.
        n_verbal: Rows scored from verbalised confidence (no usable log-probabilities).
        n_empty_rationales: Reasoning mode: rows whose model wrote an empty rationale.
        prompt_tokens: Prompt tokens of the backend calls made.
        completion_tokens: Generated tokens of the backend calls made.
        backend_seconds: Summed time spent awaiting the backend.
        wall_seconds: Wall time of the run.
    """

    n_queries: int = 0
    n_resumed: int = 0
    n_cache_hits: int = 0
    n_calls: int = 0
    n_errors: int = 0
    n_verbal: int = 0
    n_empty_rationales: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    backend_seconds: float = 0.0
    wall_seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: queries, calls, cache hits, resumed rows, errors (by kind) and tokens."""
        return (
            f"{self.n_queries} queries, {self.n_calls} LLM calls, {self.n_cache_hits} cache hits, "
            f"{self.n_resumed} resumed, {self.n_errors} errors, {self.n_verbal} verbal-confidence scores, "
            f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens"
            + (f"; errors by kind: {self.errors}" if self.errors else "")
            + (f"; {self.n_empty_rationales} empty rationales" if self.n_empty_rationales else "")
        )

    def add(self, other: RunStats) -> None:
        """Accumulate another run's counters."""
        for f in fields(self):
            if f.name != "errors":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for e, n in other.errors.items():
            self.errors[e] = self.errors.get(e, 0) + n


def _with_suffix(messages: Sequence[Message], suffix: str) -> list[Message]:
    out = [dict(m) for m in messages]
    out[-1]["content"] = out[-1]["content"] + suffix
    return out


ONE_WORD = "Reply with exactly one word: Yes or No."
REASON_SYSTEM = "First reason briefly about the question; you will give the one-word answer afterwards."
REASON_SUFFIX = (
    "\nBefore answering, explain your reasoning in two or three sentences, weighing the evidence above. "
    "Do not give the final Yes/No answer yet."
)
ANSWER_NOW = "Now answer the question with exactly one word: Yes or No."


def rationale_messages(messages: Sequence[Message]) -> list[Message]:
    """The prompt asking for a rationale first (reasoning mode): the one-word instruction becomes a request to
    reason, and the question asks for a short explanation."""
    out = [dict(m) for m in messages]
    for m in out:
        if m["role"] == "system":
            m["content"] = (
                m["content"].replace(ONE_WORD, REASON_SYSTEM)
                if ONE_WORD in m["content"]
                else f"{m['content']} {REASON_SYSTEM}"
            )
    out[-1]["content"] = out[-1]["content"] + REASON_SUFFIX
    return out


def answer_messages(messages: Sequence[Message], rationale: str) -> list[Message]:
    """The prompt that forces the answer after a rationale: the original question, the model's rationale as
    its own turn, then a request for the one-word answer (P(yes) is read from that token)."""
    return [
        *(dict(m) for m in messages),
        {"role": "assistant", "content": rationale},
        {"role": "user", "content": ANSWER_NOW},
    ]


class LLMRunner:
    """Runs prompts through a backend with caching, chunked result writes and per-row error capture.

    Args:
        backend: The LLM.
        cache: Response cache + result store.
        params: Sampling parameters (default: one token, greedy, top-20 log-probabilities).
        chunk_size: Results committed per transaction.
        progress: Called with ``(done, total)`` as rows finish.
        executor: Answers uncached prompts in one pass on Ray before the local loop.
        reasoning_tokens: If positive, each query is asked twice: first for a rationale of at most this many
            tokens (:func:`rationale_messages`), then, with the rationale in the conversation, for the
            one-word answer whose log-probabilities give P(yes) (:func:`answer_messages`). Both answers are
            cached; the rationale is stored with the result.
    """

    def __init__(
        self,
        backend: Backend,
        cache: LLMCache,
        *,
        params: SamplingParams | None = None,
        chunk_size: int = 32,
        progress: Progress | None = None,
        executor: RayExecutor | None = None,
        reasoning_tokens: int = 0,
    ) -> None:
        if reasoning_tokens and executor is not None:
            raise LLMError("reasoning_tokens runs with the local executor only (not the ray executor)")
        self.reasoning_tokens = max(0, int(reasoning_tokens))
        self.backend = backend
        self.cache = cache
        self.params = params or SamplingParams()
        self.chunk_size = chunk_size
        self.progress = progress
        self.executor = executor
        self._prefetched: dict[str, Completion | str] = {}
        self._pending: dict[str, Completion] = {}

    async def _ask(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        template: str,
        stats: RunStats,
        *,
        refresh: bool = False,
    ) -> tuple[Completion, bool]:
        key = prompt_key(self.backend.model_id, messages, params.as_dict(), template)
        hit = None if refresh else (self._pending.get(key) or self.cache.get(key))
        if hit is not None:
            stats.n_cache_hits += 1
            return hit, True
        pre = self._prefetched.pop(key, None)
        if isinstance(pre, str):
            raise LLMError(pre)
        t = time.perf_counter()
        try:
            c = pre if pre is not None else await self.backend.chat(messages, params)
        finally:
            stats.backend_seconds += time.perf_counter() - t
        stats.n_calls += 1
        stats.prompt_tokens += c.prompt_tokens
        stats.completion_tokens += c.completion_tokens
        # answers are committed with the next chunk of results (one transaction, off the hot path)
        self._pending[key] = c
        return c, False

    async def _one(
        self,
        query: str,
        messages: Sequence[Message],
        template: str,
        stats: RunStats,
        *,
        refresh: bool = False,
    ) -> ResultRow:
        try:
            rationale: str | None = None
            cached_r = True
            if self.reasoning_tokens:
                rp = SamplingParams(max_tokens=self.reasoning_tokens, temperature=0.0, top_logprobs=0)
                r, cached_r = await self._ask(
                    rationale_messages(messages), rp, template, stats, refresh=refresh
                )
                rationale = r.text.strip()
                if not rationale:
                    stats.n_empty_rationales += 1
                messages = answer_messages(messages, rationale)
            c, cached = await self._ask(messages, self.params, template, stats, refresh=refresh)
            cached = cached and cached_r
            if p_yes_from_logprobs(c.top_logprobs) is None:
                # no log-probabilities, or neither Yes nor No among them (base models often start with another
                # word): ask again for a verbalised confidence
                verbal = SamplingParams(max_tokens=16, temperature=0.0, top_logprobs=0)
                c, cached2 = await self._ask(
                    _with_suffix(messages, VERBAL_SUFFIX), verbal, template, stats, refresh=refresh
                )
                cached = cached and cached2
            s = score_completion(c)
            if s is None:
                raise LLMError(
                    f"malformed answer: {c.text[:80]!r} (no Yes/No in the reply or its log-probabilities)"
                )
            if s.method == "verbal":
                stats.n_verbal += 1
            return ResultRow(
                query, s.p_yes, s.method, None, cached, c.prompt_tokens, c.completion_tokens, rationale
            )
        except Exception as exc:
            msg = str(exc) if isinstance(exc, LLMError) else f"{type(exc).__name__}: {exc}"
            kind = msg.split(":")[0][:60]
            stats.errors[kind] = stats.errors.get(kind, 0) + 1
            return ResultRow(query, None, None, msg[:500], from_cache=False)

    async def _run(
        self,
        unit: str,
        method: str,
        queries: Sequence[str],
        messages: Sequence[Sequence[Message]],
        *,
        template: str,
        retry_failed: bool,
        stats: RunStats,
    ) -> dict[str, ResultRow]:
        stored = self.cache.done(unit, method)
        results: dict[str, ResultRow] = {}
        todo: list[int] = []
        refresh: set[int] = set()  # failed rows being retried: their cached (bad) answers are bypassed
        for i, q in enumerate(queries):
            r = stored.get(q)
            if r is not None and not (retry_failed and r.error is not None):
                results[q] = r
            else:
                todo.append(i)
                if r is not None:
                    refresh.add(i)
        stats.n_resumed += len(queries) - len(todo)
        total, done = len(queries), len(queries) - len(todo)
        if self.progress:
            self.progress(done, total)
        if self.executor is not None:
            self._prefetch(todo, refresh, messages, template)
        sem = asyncio.Semaphore(max(1, self.backend.concurrency))
        buffer: list[ResultRow] = []

        async def guarded(i: int) -> ResultRow:
            async with sem:
                return await self._one(queries[i], messages[i], template, stats, refresh=i in refresh)

        try:
            for fut in asyncio.as_completed([guarded(i) for i in todo]):
                row = await fut
                results[row.query] = row
                buffer.append(row)
                done += 1
                if len(buffer) >= self.chunk_size:
                    self._flush(unit, method, buffer, template)
                    buffer = []
                if self.progress:
                    self.progress(done, total)
        finally:
            self._flush(unit, method, buffer, template)
            await self.backend.aclose()
        return results

    def _flush(self, unit: str, method: str, rows: list[ResultRow], template: str) -> None:
        """Commit pending answers and a chunk of results in one transaction."""
        if not rows and not self._pending:
            return
        self.cache.write_results(
            unit,
            method,
            rows,
            responses=list(self._pending.items()),
            model=self.backend.model_id,
            template=template,
        )
        self._pending = {}

    def _prefetch(
        self, todo: list[int], refresh: set[int], messages: Sequence[Sequence[Message]], template: str
    ) -> None:
        """Answer the prompts of ``todo`` that are uncached (or being refreshed) on the executor in one pass."""
        assert self.executor is not None
        want: dict[str, Sequence[Message]] = {}
        for i in todo:
            key = prompt_key(self.backend.model_id, messages[i], self.params.as_dict(), template)
            if i in refresh or self.cache.get(key) is None:
                want.setdefault(key, messages[i])
        answers = self.executor.complete(list(want.values()), self.params)
        self._prefetched = dict(zip(want, answers, strict=True))

    def run(
        self,
        unit: str,
        method: str,
        queries: Sequence[str],
        messages: Sequence[Sequence[Message]],
        template: str,
        *,
        retry_failed: bool = False,
    ) -> tuple[list[ResultRow], RunStats]:
        """Score ``messages`` (one per query key), resuming from the result store.

        Args:
            unit: Run unit (e.g. ``k562/de/test/<template hash>/<model>``); results are stored under it.
            method: Method name.
            queries: Unique query keys aligned with ``messages``.
            messages: Chat messages per query.
            template: Template hash (part of the cache key).
            retry_failed: Re-run rows stored with an error (otherwise they are kept as they are).

        Returns:
            Result rows aligned with ``queries`` and the run's counters.
        """
        if len(set(queries)) != len(queries):
            raise ValueError("query keys must be unique")
        stats = RunStats(n_queries=len(queries))
        t = time.perf_counter()
        res = asyncio.run(
            self._run(
                unit, method, queries, messages, template=template, retry_failed=retry_failed, stats=stats
            )
        )
        stats.n_errors = sum(1 for r in res.values() if r.error is not None)
        stats.wall_seconds = time.perf_counter() - t
        return [res[q] for q in queries], stats


__all__ = ["LLMRunner", "RunStats"]
