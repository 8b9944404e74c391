"""The send ledger: no (message, token) is sent twice when the dispatch job replays after a crash.

Vendor calls are side effects outside Flink's checkpoints, so the record of what was sent
lives outside them too: a SQLite file (WAL) beside the job that survives a kill -9.
Before a call the tokens are marked SENDING, after an accepted call SENT; a failed call
removes its marks so a retry may send again. On replay, SENT tokens are skipped and SENDING
ones were in flight at the crash: they are sent again and counted as possible duplicates.

A claim is one row holding its tokens (newline-joined: a token has no whitespace, schemas/keys.py),
not a row per token: a broadcast batch of 1,000 tokens is two small writes, a claim and its settlement,
where a row per token cost ~20 µs of CPU per token. What a message's tokens are marked is read from its
rows once (the first claim of the message since this process started) and kept in memory for the messages
claimed most recently, so a claim checks its tokens against sets, not against the file.
"""
from __future__ import annotations

import sqlite3
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

SENDING, SENT = 1, 2
KEPT_TOKENS = 2_000_000  # marks kept in memory, of the messages claimed last (a message being sent is never dropped)
Message = tuple[str, str]  # (app_id, msg_id)


@dataclass(frozen=True)
class Claim:
    send: list[str]  # tokens to send now (in_doubt included)
    already_sent: list[str]  # accepted before a restart: skip
    in_doubt: list[str]  # in flight at a crash: sent again, possibly a duplicate
    app_id: str = ""
    msg_id: str = ""
    row: int = 0  # the claim's row: its SENDING marks


@dataclass
class Marks:
    """A message's tokens as its rows mark them."""
    sent: set[str] = field(default_factory=set)
    sending: dict[str, int] = field(default_factory=dict)  # token -> the row of the claim that marks it
    open_rows: Counter[int] = field(default_factory=Counter)  # row -> how many tokens it still marks SENDING

    def __len__(self) -> int:
        return len(self.sent) + len(self.sending)


class SendLedger:
    def __init__(self, path: Path, retention_s: float = 3 * 86400, kept_tokens: int = KEPT_TOKENS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survives a process crash; the OS flushes
        self._db.execute("CREATE TABLE IF NOT EXISTS claims (app_id TEXT, msg_id TEXT, state INTEGER, tokens BLOB, at REAL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS claims_of_message ON claims (app_id, msg_id)")
        _take_token_rows(self._db)
        self._db.execute("DELETE FROM claims WHERE at < ?", (time.time() - retention_s,))
        self._marks: OrderedDict[Message, Marks] = OrderedDict()
        self._kept_tokens = kept_tokens
        self._held = 0  # tokens marked in self._marks

    def claim(self, app_id: str, msg_id: str, tokens: list[str]) -> Claim:
        marks = self._marks_of((app_id, msg_id))
        held_before = len(marks)
        already = [t for t in tokens if t in marks.sent]
        in_doubt = [t for t in tokens if t in marks.sending]
        send = [t for t in tokens if t not in marks.sent] if already else tokens
        row = 0
        if send:
            with self._db:
                self._db.execute("BEGIN")
                if in_doubt:  # their marks move from the crashed claim's row to this one
                    self._unmark(marks, in_doubt)
                row = self._insert(app_id, msg_id, SENDING, send)
            marks.sending.update(dict.fromkeys(send, row))
            marks.open_rows[row] = len(send)
        self._held += len(marks) - held_before
        self._forget_old((app_id, msg_id))
        return Claim(send, already, in_doubt, app_id, msg_id, row)

    def settle(self, claim: Claim, accepted: list[str], not_sent: list[str]) -> None:
        """Accepted tokens become SENT; the marks of tokens the vendor did not take are removed."""
        marks = self._marks_of((claim.app_id, claim.msg_id))
        held_before = len(marks)
        with self._db:
            self._db.execute("BEGIN")
            if accepted:
                self._insert(claim.app_id, claim.msg_id, SENT, accepted)
            self._unmark(marks, [*accepted, *not_sent])
        marks.sent.update(accepted)
        self._held += len(marks) - held_before

    def _insert(self, app_id: str, msg_id: str, state: int, tokens: list[str]) -> int:
        cursor = self._db.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?)",
                                  (app_id, msg_id, state, "\n".join(tokens).encode(), time.time()))
        return int(cursor.lastrowid or 0)

    def _unmark(self, marks: Marks, tokens: list[str]) -> None:
        """Take the tokens' SENDING marks off the rows that hold them: a row left without any is deleted, one left
        with some (a claim settled in part, a crashed claim's tokens claimed again) is written again."""
        for row, n in Counter(marks.sending.pop(t) for t in tokens if t in marks.sending).items():
            marks.open_rows[row] -= n
            if marks.open_rows[row] > 0:
                rest = [t for t, r in marks.sending.items() if r == row]
                self._db.execute("UPDATE claims SET tokens = ? WHERE rowid = ?", ("\n".join(rest).encode(), row))
            else:
                del marks.open_rows[row]
                self._db.execute("DELETE FROM claims WHERE rowid = ?", (row,))

    def _marks_of(self, message: Message) -> Marks:
        marks = self._marks.get(message)
        if marks is None:
            marks = self._marks[message] = self._read(message)
            self._held += len(marks)
        self._marks.move_to_end(message)
        return marks

    def _read(self, message: Message) -> Marks:
        marks = Marks()
        for row, state, tokens in self._db.execute("SELECT rowid, state, tokens FROM claims WHERE app_id = ? AND msg_id = ?", message):
            listed = tokens.decode().split("\n") if tokens else []
            if state == SENT:
                marks.sent.update(listed)
            else:
                marks.sending.update(dict.fromkeys(listed, row))
        marks.sending = {t: row for t, row in marks.sending.items() if t not in marks.sent}
        marks.open_rows = Counter(marks.sending.values())
        return marks

    def _forget_old(self, keep: Message) -> None:
        """Drop the marks of the messages claimed longest ago while more than kept_tokens are held (read again if needed)."""
        while self._held > self._kept_tokens:
            oldest = next(iter(self._marks))
            if oldest == keep:
                break
            self._held -= len(self._marks.pop(oldest))

    def close(self) -> None:
        self._db.close()


def _take_token_rows(db: sqlite3.Connection) -> None:
    """The marks of a ledger written before claims were rows (a row per token), as claims; that table is dropped."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'app_sends'").fetchone():
        return
    with db:
        db.execute("BEGIN")
        db.execute("INSERT INTO claims SELECT app_id, msg_id, state, CAST(group_concat(token, char(10)) AS BLOB), max(at)"
                   " FROM app_sends GROUP BY app_id, msg_id, state")
        db.execute("DROP TABLE app_sends")
    db.execute("DROP TABLE IF EXISTS sends")
