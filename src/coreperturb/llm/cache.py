"""SQLite (WAL) response cache and per-row result store: resume after a crash, no repeated calls.

* ``responses``: sha256(model, messages, sampling params, template hash) → the backend's answer,
  committed together with each chunk of results: a killed run re-asks at most the answers of its last,
  uncommitted chunk, and never a prompt whose answer was committed.
* ``results``: one row per (run unit, method, query key) with the score or the error. Written in chunks;
  the primary key makes a resumed run unable to duplicate rows.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coreperturb.llm.backends import Completion, Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, model TEXT, template TEXT, response TEXT NOT NULL, created REAL
);
CREATE TABLE IF NOT EXISTS results (
    unit TEXT NOT NULL, method TEXT NOT NULL, query TEXT NOT NULL,
    score REAL, score_method TEXT, error TEXT, from_cache INTEGER, prompt_tokens INTEGER,
    completion_tokens INTEGER, created REAL,
    PRIMARY KEY (unit, method, query)
);
"""


def prompt_key(model: str, messages: Sequence[Message], params: dict[str, Any], template_hash: str) -> str:
    """sha256 over everything that determines the answer."""
    blob = json.dumps(
        {"model": model, "messages": list(messages), "params": params, "template": template_hash},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class ResultRow:
    """One scored (or failed) query."""

    query: str
    score: float | None
    score_method: str | None
    error: str | None
    from_cache: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LLMCache:
    """Response cache + result store in one SQLite file (WAL mode, safe across processes).

    Args:
        path: SQLite file (created with its parent directory).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def get(self, key: str) -> Completion | None:
        """Cached answer for ``key``."""
        with self._lock:
            row = self._conn.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return Completion.from_json(json.loads(row[0])) if row else None

    def done(self, unit: str, method: str) -> dict[str, ResultRow]:
        """Stored results (errors included) of a run unit and method, keyed by query key."""
        sql = "SELECT query, score, score_method, error, from_cache, prompt_tokens, completion_tokens FROM results WHERE unit = ? AND method = ?"
        with self._lock:
            rows = self._conn.execute(sql, (unit, method)).fetchall()
        return {r[0]: ResultRow(r[0], r[1], r[2], r[3], bool(r[4]), r[5] or 0, r[6] or 0) for r in rows}

    def write_results(
        self,
        unit: str,
        method: str,
        rows: Iterable[ResultRow],
        responses: Sequence[tuple[str, Completion]] = (),
        model: str = "",
        template: str = "",
    ) -> None:
        """Upsert a chunk of results (and the answers behind them) in one transaction."""
        now = time.time()
        data = [
            (
                unit,
                method,
                r.query,
                r.score,
                r.score_method,
                r.error,
                int(r.from_cache),
                r.prompt_tokens,
                r.completion_tokens,
                now,
            )
            for r in rows
        ]
        answers = [(k, model, template, json.dumps(c.to_json()), now) for k, c in responses]
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)", answers)
                self._conn.executemany("INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?,?)", data)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise


__all__ = ["LLMCache", "ResultRow", "prompt_key"]
