"""The send ledger: no (message, token) is sent twice when the dispatch job replays after a crash.

Vendor calls are side effects outside Flink's checkpoints, so the record of what was sent
lives outside them too: a SQLite file (WAL) beside the job that survives a kill -9.
Before a call the tokens are marked SENDING, after an accepted call SENT; a failed call
deletes its marks so a retry may send again. On replay, SENT tokens are skipped and SENDING
ones were in flight at the crash: they are sent again and counted as possible duplicates.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SENDING, SENT = 1, 2


@dataclass(frozen=True)
class Claim:
    send: list[str]  # tokens to send now (in_doubt included)
    already_sent: list[str]  # accepted before a restart: skip
    in_doubt: list[str]  # in flight at a crash: sent again, possibly a duplicate


class SendLedger:
    def __init__(self, path: Path, retention_s: float = 3 * 86400) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survives a process crash; the OS flushes
        # scoped by app: two apps may use the same msg id (the table before that was "sends")
        self._db.execute("CREATE TABLE IF NOT EXISTS app_sends (app_id TEXT, msg_id TEXT, token TEXT, state INTEGER,"
                         " at REAL, PRIMARY KEY (app_id, msg_id, token)) WITHOUT ROWID")
        self._db.execute("DROP TABLE IF EXISTS sends")
        self._db.execute("DELETE FROM app_sends WHERE at < ?", (time.time() - retention_s,))

    def claim(self, app_id: str, msg_id: str, tokens: list[str]) -> Claim:
        known = self._states(app_id, msg_id, tokens)
        already = [t for t in tokens if known.get(t) == SENT]
        in_doubt = [t for t in tokens if known.get(t) == SENDING]
        send = [t for t in tokens if known.get(t) != SENT]
        now = time.time()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO app_sends VALUES (?, ?, ?, ?, ?)",
                                 [(app_id, msg_id, t, SENDING, now) for t in send])
        return Claim(send, already, in_doubt)

    def settle(self, app_id: str, msg_id: str, accepted: list[str], not_sent: list[str]) -> None:
        """Accepted tokens become SENT; the marks of tokens the vendor did not take are removed."""
        now = time.time()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE app_sends SET state = ?, at = ? WHERE app_id = ? AND msg_id = ? AND token = ?",
                                 [(SENT, now, app_id, msg_id, t) for t in accepted])
            self._db.executemany("DELETE FROM app_sends WHERE app_id = ? AND msg_id = ? AND token = ?",
                                 [(app_id, msg_id, t) for t in not_sent])

    def _states(self, app_id: str, msg_id: str, tokens: list[str]) -> dict[str, int]:
        states: dict[str, int] = {}
        for start in range(0, len(tokens), 900):  # SQLite's bound-parameter limit
            part = tokens[start : start + 900]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(f"SELECT token, state FROM app_sends WHERE app_id = ? AND msg_id = ? AND token IN ({marks})",
                                    [app_id, msg_id, *part])
            states.update(rows.fetchall())
        return states

    def close(self) -> None:
        self._db.close()
