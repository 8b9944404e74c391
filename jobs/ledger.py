"""The send ledger: no (message, token) is sent twice when the dispatch job replays after a crash.

Vendor calls are side effects outside Flink's checkpoints, so the record of what was sent
lives outside them too: a SQLite file (WAL) beside the job that survives a kill -9.
Before a call the tokens are marked SENDING, after an accepted call SENT; a failed call
removes its marks so a retry may send again. On replay, SENT tokens are skipped and SENDING
ones were in flight at the crash: they are sent again and counted as possible duplicates.

A claim is a row per token shard (keys.token_shard) holding its tokens, newline-joined (a token has no
whitespace: schemas/keys.py), not a row per token: a broadcast batch, whose tokens are all of one shard,
is two small writes, its claim and its settlement, where a row per token cost ~10 µs of CPU per token.
The marks of a (message, shard) are read from its rows once and kept in memory for the shards claimed
most recently, so a claim checks its tokens against sets, not against the file; memory stays bounded
by KEPT_TOKENS whatever a broadcast's size (a message's shards are let go of, and read again if needed).
"""
from __future__ import annotations

import sqlite3
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from pushpipe.schemas.keys import token_shard

SENDING, SENT = 1, 2
KEPT_TOKENS = 1_000_000  # marks kept in memory (~150 bytes each), of the (message, shard)s claimed last
Marked = tuple[str, str, int]  # (app_id, msg_id, token shard)


@dataclass(frozen=True)
class Claim:
    send: list[str]  # tokens to send now (in_doubt included)
    already_sent: list[str]  # accepted before a restart: skip
    in_doubt: list[str]  # in flight at a crash: sent again, possibly a duplicate
    app_id: str = ""
    msg_id: str = ""
    shards: dict[str, int] = field(default_factory=dict)  # token sent -> its shard


@dataclass
class Marks:
    """The tokens of one shard of a message as its rows mark them."""
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
        self._db.execute("CREATE TABLE IF NOT EXISTS shard_claims (app_id TEXT, msg_id TEXT, shard INTEGER, state INTEGER,"
                         " tokens BLOB, at REAL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS shard_claims_of_message ON shard_claims (app_id, msg_id, shard)")
        _take_token_rows(self._db)
        self._db.execute("DELETE FROM shard_claims WHERE at < ?", (time.time() - retention_s,))
        self._marks: OrderedDict[Marked, Marks] = OrderedDict()
        self._kept_tokens = kept_tokens
        self._held = 0  # tokens marked in self._marks

    def claim(self, app_id: str, msg_id: str, tokens: list[str]) -> Claim:
        shards = [token_shard(t) for t in tokens]
        marks = {s: self._marks_of((app_id, msg_id, s)) for s in set(shards)}
        already = [t for t, s in zip(tokens, shards, strict=True) if t in marks[s].sent]
        in_doubt = [t for t, s in zip(tokens, shards, strict=True) if t in marks[s].sending]
        send = [(t, s) for t, s in zip(tokens, shards, strict=True) if t not in marks[s].sent]
        doubt = set(in_doubt)
        with self._db:
            self._db.execute("BEGIN")
            for shard, listed in _by_shard([t for t, _ in send], [s for _, s in send]).items():
                if doubt:  # tokens of a crashed claim: their marks move to this one
                    self._unmark(marks[shard], [t for t in listed if t in doubt])
                row = self._insert(app_id, msg_id, shard, SENDING, listed)
                self._mark(marks[shard], listed, row)
        self._forget_old({(app_id, msg_id, s) for s in marks})
        return Claim([t for t, _ in send], already, in_doubt, app_id, msg_id, dict(send))

    def settle(self, claim: Claim, accepted: list[str], not_sent: list[str]) -> None:
        """Accepted tokens become SENT; the marks of tokens the vendor did not take are removed."""
        settled = [*accepted, *not_sent]
        taken = set(accepted)
        with self._db:
            self._db.execute("BEGIN")
            for shard, listed in _by_shard(settled, [claim.shards[t] for t in settled]).items():
                marks = self._marks_of((claim.app_id, claim.msg_id, shard))
                self._unmark(marks, listed)
                sent = [t for t in listed if t in taken]
                if sent:
                    self._insert(claim.app_id, claim.msg_id, shard, SENT, sent)
                    held_before = len(marks)
                    marks.sent.update(sent)
                    self._held += len(marks) - held_before

    def _insert(self, app_id: str, msg_id: str, shard: int, state: int, tokens: list[str]) -> int:
        cursor = self._db.execute("INSERT INTO shard_claims VALUES (?, ?, ?, ?, ?, ?)",
                                  (app_id, msg_id, shard, state, "\n".join(tokens).encode(), time.time()))
        return int(cursor.lastrowid or 0)

    def _mark(self, marks: Marks, tokens: list[str], row: int) -> None:
        held_before = len(marks)
        marked = dict.fromkeys(tokens, row)
        marks.sending.update(marked)
        marks.open_rows[row] = len(marked)
        self._held += len(marks) - held_before

    def _unmark(self, marks: Marks, tokens: list[str]) -> None:
        """Take the tokens' SENDING marks off the rows that hold them: a row left without any is deleted, one left
        with some (a claim settled in part, a crashed claim's tokens claimed again) is written again."""
        held_before = len(marks)
        for row, n in Counter(marks.sending.pop(t) for t in tokens if t in marks.sending).items():
            marks.open_rows[row] -= n
            if marks.open_rows[row] > 0:
                rest = [t for t, r in marks.sending.items() if r == row]
                self._db.execute("UPDATE shard_claims SET tokens = ? WHERE rowid = ?", ("\n".join(rest).encode(), row))
            else:
                del marks.open_rows[row]
                self._db.execute("DELETE FROM shard_claims WHERE rowid = ?", (row,))
        self._held += len(marks) - held_before

    def _marks_of(self, marked: Marked) -> Marks:
        marks = self._marks.get(marked)
        if marks is None:
            marks = self._marks[marked] = self._read(marked)
            self._held += len(marks)
        self._marks.move_to_end(marked)
        return marks

    def _read(self, marked: Marked) -> Marks:
        marks = Marks()
        rows = self._db.execute("SELECT rowid, state, tokens FROM shard_claims WHERE app_id = ? AND msg_id = ? AND shard = ?", marked)
        for row, state, tokens in rows:
            listed = tokens.decode().split("\n") if tokens else []
            if state == SENT:
                marks.sent.update(listed)
            else:
                marks.sending.update(dict.fromkeys(listed, row))
        marks.sending = {t: row for t, row in marks.sending.items() if t not in marks.sent}
        marks.open_rows = Counter(marks.sending.values())
        return marks

    def _forget_old(self, keep: set[Marked]) -> None:
        """Let go of the marks claimed longest ago while more than kept_tokens are held (read again if needed)."""
        while self._held > self._kept_tokens:
            oldest = next(iter(self._marks))
            if oldest in keep:
                break
            self._held -= len(self._marks.pop(oldest))

    def close(self) -> None:
        self._db.close()


def _by_shard(tokens: list[str], shards: list[int]) -> dict[int, list[str]]:
    """The tokens grouped by their shards (a broadcast batch's are all of one)."""
    if len(set(shards)) <= 1:
        return {shards[0]: tokens} if tokens else {}
    grouped: dict[int, list[str]] = {}
    for token, shard in zip(tokens, shards, strict=True):
        grouped.setdefault(shard, []).append(token)
    return grouped


def _take_token_rows(db: sqlite3.Connection) -> None:
    """The marks of a ledger written before claims were rows (a row per token), as claims; that table is dropped."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'app_sends'").fetchone():
        return
    rows = db.execute("SELECT app_id, msg_id, state, token FROM app_sends")
    grouped: dict[tuple[str, str, int, int], list[str]] = {}  # (app, message, shard, state) -> tokens
    for app_id, msg_id, state, token in rows:
        grouped.setdefault((app_id, msg_id, token_shard(token), state), []).append(token)
    with db:
        db.execute("BEGIN")
        db.executemany("INSERT INTO shard_claims VALUES (?, ?, ?, ?, ?, ?)",
                       [(*key, "\n".join(tokens).encode(), time.time()) for key, tokens in grouped.items()])
        db.execute("DROP TABLE app_sends")
    db.execute("DROP TABLE IF EXISTS sends")
