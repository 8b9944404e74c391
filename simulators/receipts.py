"""Delivery receipts, as HMS and Honor send them: batches of
`{"statuses": [{"biTag", "appid", "token", "status", "timestamp", "requestId"}]}` POSTed to the
receipt URL configured for the app (here `SimConfig.receipt_url`), in the background and best
effort: a failed POST is counted and dropped, never retried, and never delays the push API.

status 0 = delivered (doopush, 2nd); the other status values are UNCONFIRMED, so only 0 is sent.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import httpx

DELIVERED = 0


def receipt(app_id: str, bi_tag: str, token: str, request_id: str, now: float) -> dict[str, Any]:
    return {"biTag": bi_tag, "appid": app_id, "token": token, "status": DELIVERED,
            "timestamp": int(now * 1000), "requestId": request_id}


class ReceiptPoster:
    """Queues receipts and POSTs them in batches of up to `batch_size` every `interval_s`."""

    def __init__(self, batch_size: int = 100, interval_s: float = 0.05, timeout_s: float = 5.0) -> None:
        self.batch_size, self.interval_s, self.timeout_s = batch_size, interval_s, timeout_s
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self.posted = 0  # receipts delivered to the receiver (HTTP 2xx)
        self.failed = 0  # receipts dropped after a failed POST

    def emit(self, url: str, statuses: list[dict[str, Any]]) -> None:
        """Queue receipts for `url`; call from the event loop. No-op without a URL."""
        if not url or not statuses:
            return
        self._pending.extend((url, s) for s in statuses)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while self._pending:
                await asyncio.sleep(self.interval_s)
                batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
                for url, statuses in _by_url(batch).items():
                    await self._post(client, url, statuses)

    async def _post(self, client: httpx.AsyncClient, url: str, statuses: list[dict[str, Any]]) -> None:
        try:
            resp = await client.post(url, json={"statuses": statuses})
            ok = resp.is_success
        except (httpx.HTTPError, OSError):
            ok = False
        if ok:
            self.posted += len(statuses)
        else:
            self.failed += len(statuses)


def _by_url(batch: list[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for url, status in batch:
        grouped[url].append(status)
    return grouped
