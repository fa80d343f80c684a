"""A small OpenAI-compatible chat-completions server with log-probabilities and fault injection.

For tests and dry runs of the HTTP path without a model: P(yes) is a deterministic function of the prompt
(by default it reads the counts of positive/negative evidence lines, so CORE prompts carry signal). Faults are
injected deterministically per prompt: the first ``n`` attempts of a prompt can time out, return 500 or 429,
or a prompt can get a malformed answer every time.

Run standalone from the repository root: ``python -m tests.doubles.fake_server --port 8099``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def default_p_yes(text: str) -> float:
    """Evidence-reading script: more positive than negative related perturbations → higher P(yes)."""
    pos = neg = 0
    side = None
    for line in text.splitlines():
        if " that did NOT " in line:
            side = "neg"
        elif line.startswith("Observed perturbations related"):
            side = "pos"
        elif line.startswith("- ") and side and "none" not in line:
            if side == "pos":
                pos += 1
            else:
                neg += 1
    h = int(hashlib.sha256(text.encode()).hexdigest()[:6], 16) / 0xFFFFFF
    return 1 / (1 + math.exp(-(0.8 * (pos - neg) - 1.0 + 0.5 * (h - 0.5))))


def _bucket(text: str, salt: str) -> float:
    return int(hashlib.sha256((salt + text).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


@dataclass
class Faults:
    """Fault injection (fractions of prompts, chosen by hash; each fault hits the first ``attempts`` tries).

    Attributes:
        timeout: Share of prompts whose first attempts hang for ``hang_seconds``.
        error500: Share whose first attempts get HTTP 500.
        error429: Share whose first attempts get HTTP 429.
        malformed: Share that always get an answer with neither Yes nor No.
        no_logprobs: Answer without log-probabilities (whole server), to exercise the verbal fallback.
        attempts: Failing attempts per affected prompt before it succeeds.
        hang_seconds: How long a "timeout" hangs.
    """

    timeout: float = 0.0
    error500: float = 0.0
    error429: float = 0.0
    malformed: float = 0.0
    no_logprobs: bool = False
    attempts: int = 1
    hang_seconds: float = 3.0


@dataclass
class ServerState:
    """What the server saw (for assertions)."""

    requests: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeOpenAIServer:
    """Threaded HTTP server on 127.0.0.1 speaking ``POST /v1/chat/completions``.

    Args:
        p_yes: Prompt text → P(yes).
        faults: Fault injection settings.
        port: 0 picks a free port.
        latency: Seconds added to every answer (simulated model time).
    """

    def __init__(
        self,
        p_yes: Callable[[str], float] = default_p_yes,
        faults: Faults | None = None,
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        self.p_yes = p_yes
        self.faults = faults or Faults()
        self.latency = latency
        self.state = ServerState()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                try:
                    req = json.loads(self.rfile.read(n))
                except ValueError:
                    self._send(400, {"error": {"message": "bad json"}})
                    return
                code, body = server.handle(req)
                self._send(code, body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """Bound port."""
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def handle(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one request body (status code, JSON body)."""
        text = "\n".join(str(m.get("content", "")) for m in req.get("messages", []))
        with self.state.lock:
            self.state.requests[text] += 1
            attempt = self.state.requests[text]
        f = self.faults
        if attempt <= f.attempts:
            if _bucket(text, "timeout") < f.timeout:
                time.sleep(f.hang_seconds)
                return 500, {"error": {"message": "hung"}}
            if _bucket(text, "500") < f.error500:
                return 500, {"error": {"message": "injected server error"}}
            if _bucket(text, "429") < f.error429:
                return 429, {"error": {"message": "injected rate limit"}}
        if self.latency:
            time.sleep(self.latency)
        p = min(max(self.p_yes(text), 1e-6), 1 - 1e-6)
        malformed = _bucket(text, "malformed") < f.malformed
        if malformed:
            content, tops = (
                "Perhaps",
                [{"token": "Perhaps", "logprob": -0.1}, {"token": "Maybe", "logprob": -2.5}],
            )
        elif "explain your reasoning" in str(req.get("messages", [{}])[-1].get("content", "")):
            # reasoning mode's first turn: a short rationale, no answer yet
            content = f"The related perturbations weigh {'for' if p >= 0.5 else 'against'} a change here."
            tops = []
        elif req.get("logprobs") and not f.no_logprobs:
            content = "Yes" if p >= 0.5 else "No"
            tops = [{"token": "Yes", "logprob": math.log(p)}, {"token": "No", "logprob": math.log(1 - p)}]
        else:
            content = f"{'Yes' if p >= 0.5 else 'No'}, confidence {round(100 * max(p, 1 - p))}"
            tops = []
        with self.state.lock:
            self.state.answered[text] += 1
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": "length",
            "message": {"role": "assistant", "content": content},
        }
        if tops and req.get("logprobs") and not f.no_logprobs:
            k = int(req.get("top_logprobs") or 1)
            choice["logprobs"] = {
                "content": [{"token": content, "logprob": tops[0]["logprob"], "top_logprobs": tops[:k]}]
            }
        n_prompt = len(text.split())
        return 200, {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": req.get("model", "fake"),
            "choices": [choice],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": 1, "total_tokens": n_prompt + 1},
        }

    def start(self) -> FakeOpenAIServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut down."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """Run the fake server in the foreground."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--error500", type=float, default=0.0)
    ap.add_argument("--malformed", type=float, default=0.0)
    ap.add_argument("--latency", type=float, default=0.0)
    a = ap.parse_args()
    srv = FakeOpenAIServer(
        faults=Faults(error500=a.error500, malformed=a.malformed), port=a.port, latency=a.latency
    )
    print(f"serving {srv.base_url}", flush=True)
    srv._httpd.serve_forever()


if __name__ == "__main__":
    main()
