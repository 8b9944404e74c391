"""A message's lifecycle as the API shows it: its counts in Elasticsearch's message document (sinks/elastic.py), and
the furthest state any of its devices reached.

The document (id "<app>:<msg>") appears once analytics counted the message's first result, so a message just
accepted is not found for a few seconds. Read with one pooled async HTTP client: the answer never waits on a thread.
"""
from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

import httpx

from pushpipe.config import Settings
from pushpipe.schemas import keys

Doc = dict[str, Any]
# furthest first: the state of a message is the first of these that any of its devices reached
STATES = (("opened", ("opened", "clicked")), ("delivered", ("delivered",)), ("accepted", ("accepted",)), ("retrying", ("retrying",)))
SHOWN = ("msg_id", "category", "priority", "campaign", "vendors", "requested_at", "last_completed_at")


class Unavailable(Exception):
    """Elasticsearch did not answer, or not as it should."""


class MessageReader(Protocol):
    async def message(self, app_id: str, msg_id: str) -> Doc | None:
        """The app's message document, or None when the app has no such message (yet)."""

    async def close(self) -> None: ...


class ElasticMessages:
    def __init__(self, settings: Settings, timeout_s: float = 5.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.index = settings.es_index
        self._client = httpx.AsyncClient(base_url=settings.es_url, timeout=timeout_s, transport=transport)

    async def message(self, app_id: str, msg_id: str) -> Doc | None:
        try:
            answer = await self._client.get(f"/{self.index}/_doc/{quote(keys.message_doc_id(app_id, msg_id), safe='')}")
        except httpx.HTTPError as failed:
            raise Unavailable(type(failed).__name__) from None
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise Unavailable(f"Elasticsearch answered {answer.status_code}")
        source: Doc | None = answer.json().get("_source")
        return source if source and source.get("app_id") == app_id else None  # never another app's

    async def close(self) -> None:
        await self._client.aclose()


def state(counts: dict[str, int]) -> str:
    """opened, delivered, accepted (by a vendor), retrying, or not_sent (every device refused, suppressed or failed)."""
    for name, keys_ in STATES:
        if any(counts.get(k, 0) > 0 for k in keys_):
            return name
    return "not_sent"


def view(doc: Doc) -> Doc:
    counts = {k: int(v) for k, v in (doc.get("counts") or {}).items()}
    return {**{k: doc.get(k) for k in SHOWN}, "state": state(counts), "counts": counts,
            "final": counts.get("retrying", 0) == 0}
