"""OAuth2 access tokens for vendor APIs: fetch at a token endpoint (cached by connectors.credentials.AccessTokenCache).

Shared by FCM (JWT-bearer grant with a service-account key) and HMS / Honor (client-credentials
grant). A failed fetch raises `TokenError`, which carries the `Outcome` every token of the batch
gets: 429 -> throttled, 5xx / transport / malformed reply -> unavailable, other 4xx (bad client
id, secret or key) -> rejected, because retrying cannot fix configuration.
"""
from __future__ import annotations

from collections.abc import Mapping

import httpx

from pushpipe.connectors.base import Outcome, VendorError
from pushpipe.connectors.credentials import AccessToken, Clock, Fetch
from pushpipe.connectors.http import failure_code, failure_reason, json_object, parse_retry_after

CLIENT_CREDENTIALS = "client_credentials"


class TokenError(VendorError):
    """The token endpoint refused or failed; every token of the batch gets `outcome`."""


# ---- token endpoint ------------------------------------------------------------------------------

def _error_reason(doc: Mapping[str, object], body: bytes) -> str:
    parts = [str(doc[k]) for k in ("error", "error_description") if doc.get(k) not in (None, "")]
    return ": ".join(parts) if parts else body[:200].decode(errors="replace")


def token_from_response(status: int, headers: Mapping[str, str], body: bytes, now: float) -> AccessToken:
    """The AccessToken in a token-endpoint reply, or TokenError with the outcome it implies."""
    doc = json_object(body)
    if status == 200:
        value, expires_in = doc.get("access_token"), doc.get("expires_in", 3600)
        if isinstance(value, str) and value and isinstance(expires_in, int | float | str):
            try:
                return AccessToken(value, now + float(expires_in))
            except ValueError:
                pass
        raise TokenError(Outcome.UNAVAILABLE, "200", "token endpoint: malformed reply")
    reason = f"token endpoint: {_error_reason(doc, body)}"
    retry_after = parse_retry_after(headers.get("retry-after"), now)
    if status == 429:
        raise TokenError(Outcome.THROTTLED, str(status), reason, retry_after)
    if status >= 500:
        raise TokenError(Outcome.UNAVAILABLE, str(status), reason, retry_after)
    raise TokenError(Outcome.REJECTED, str(status), reason)


async def request_token(client: httpx.AsyncClient, url: str, form: Mapping[str, str], clock: Clock) -> AccessToken:
    """POST a form to a token endpoint; TokenError on any failure (never an httpx exception)."""
    try:
        resp = await client.post(url, data=dict(form), headers={"accept": "application/json"})
    except (httpx.HTTPError, OSError) as exc:
        raise TokenError(Outcome.UNAVAILABLE, failure_code(exc), f"token endpoint: {failure_reason(exc)}") from exc
    return token_from_response(resp.status_code, resp.headers, resp.content, clock())


def client_credentials_form(client_id: str, client_secret: str) -> dict[str, str]:
    return {"grant_type": CLIENT_CREDENTIALS, "client_id": client_id, "client_secret": client_secret}


def client_credentials(client: httpx.AsyncClient, url: str, client_id: str, client_secret: str,
                       clock: Clock) -> Fetch:
    """A Fetch for the client-credentials grant (HMS, Honor)."""
    form = client_credentials_form(client_id, client_secret)
    return lambda: request_token(client, url, form, clock)
