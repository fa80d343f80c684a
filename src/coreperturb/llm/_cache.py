"""SQLite (WAL) response cache and per-row result store: resume after a crash, no repeated calls.

* ``responses``: sha256(model, messages, sampling params, template hash) → the backend's answer. By default
  in a cache shared by every run of the user (:func:`default_response_cache`: ``$COREPERTURB_CACHE_DIR`` or
  the platform's user cache directory), so a second run into another output folder asks nothing again;
  committed just before each chunk of results, so a killed run re-asks at most the answers of its last,
  uncommitted chunk. WAL mode and a 30 s busy timeout let concurrent runs share it.
* ``results``: one row per (run unit, method, query key) with the score, the rationale or the error, in
  the run's own folder. Written in chunks; the primary key makes a resumed run unable to duplicate rows.
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

from coreperturb.llm._backends import Completion, Message
from coreperturb.llm._paths import RESPONSES_FILE, default_response_cache

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, model TEXT, template TEXT, response TEXT NOT NULL, created REAL
);
CREATE TABLE IF NOT EXISTS results (
    unit TEXT NOT NULL, method TEXT NOT NULL, query TEXT NOT NULL,
    score REAL, score_method TEXT, error TEXT, from_cache INTEGER, prompt_tokens INTEGER,
    completion_tokens INTEGER, created REAL, rationale TEXT,
    PRIMARY KEY (unit, method, query)
);
"""


BUSY_SECONDS = 30.0
"""How long a connection waits for another run's lock before it gives up."""


def _when_unlocked(conn: sqlite3.Connection, sql: str) -> None:
    """Run ``sql``, waiting while another connection holds the lock. Switching a new database to WAL answers
    ``database is locked`` at once when another run opens it at the same moment: SQLite does not call the
    busy handler for it, so this waits and tries again (up to :data:`BUSY_SECONDS`)."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            conn.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, timeout=BUSY_SECONDS, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")  # runs wait for each other's commits
    _when_unlocked(conn, "PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    cols = {r[1] for r in conn.execute("PRAGMA table_info(results)")}
    if "rationale" not in cols:  # a result store written before reasoning mode
        try:
            conn.execute("ALTER TABLE results ADD COLUMN rationale TEXT")
        except sqlite3.OperationalError as exc:  # another run added it in the meantime
            if "duplicate column" not in str(exc):
                raise
    return conn


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
    rationale: str | None = None


class LLMCache:
    """Result store and response cache (SQLite, WAL mode, safe across processes).

    Args:
        path: SQLite file of the run's result store (created with its parent directory).
        responses: SQLite file of the response cache, usually shared by all runs
            (:func:`default_response_cache`); ``None`` keeps the answers in ``path`` too.
    """

    def __init__(self, path: str | Path, responses: str | Path | None = None) -> None:
        self.path = Path(path)
        self.responses_path = Path(responses) if responses is not None else self.path
        self._conn = _connect(self.path)
        same = self.responses_path.resolve() == self.path.resolve()
        self._rconn = self._conn if same else _connect(self.responses_path)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connections."""
        if self._rconn is not self._conn:
            self._rconn.close()
        self._conn.close()

    def get(self, key: str) -> Completion | None:
        """Cached answer for ``key``."""
        with self._lock:
            row = self._rconn.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return Completion.from_json(json.loads(row[0])) if row else None

    def done(self, unit: str, method: str) -> dict[str, ResultRow]:
        """Stored results (errors included) of a run unit and method, keyed by query key."""
        sql = (
            "SELECT query, score, score_method, error, from_cache, prompt_tokens, completion_tokens, rationale "
            "FROM results WHERE unit = ? AND method = ?"
        )
        with self._lock:
            rows = self._conn.execute(sql, (unit, method)).fetchall()
        return {r[0]: ResultRow(r[0], r[1], r[2], r[3], bool(r[4]), r[5] or 0, r[6] or 0, r[7]) for r in rows}

    def write_results(
        self,
        unit: str,
        method: str,
        rows: Iterable[ResultRow],
        *,
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
                r.rationale,
            )
            for r in rows
        ]
        answers = [(k, model, template, json.dumps(c.to_json()), now) for k, c in responses]
        with self._lock:
            # answers first (they may live in the shared cache): a crash between the two commits leaves
            # answers without results, which a resumed run finds as cache hits, never the reverse
            for conn, sql, values in (
                (self._rconn, "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)", answers),
                (
                    self._conn,
                    "INSERT OR REPLACE INTO results (unit, method, query, score, score_method, error, "
                    "from_cache, prompt_tokens, completion_tokens, created, rationale) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    data,
                ),
            ):
                if not values:
                    continue
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(sql, values)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise


__all__ = ["RESPONSES_FILE", "LLMCache", "ResultRow", "default_response_cache", "prompt_key"]
