"""Who may post to the receipt gateway: a signature in the callback URL, and a key per app for its SDK.

Both are HMACs of one key (the `receipt_key_file` setting; `pushpipe up` creates it, mode 0600), so the
dispatch job can sign the callback URL it gives a vendor with each send, and the gateway can check it,
without a table of per-app secrets:
- a vendor that takes a callback URL with each message (Xiaomi, OPPO, vivo, Meizu) posts to
  /r/<vendor>/<app>/<sig>, sig = HMAC(app key, "<vendor>|<app>");
- a vendor whose receipt URL is set once in its console (HMS, Honor) posts to /r/<vendor>/-/<sig>,
  sig = HMAC(receipt key, "<vendor>|"), and names the app in each receipt's biTag ("<app>|<msg>"): one URL
  for every app;
- an app's SDK posts its events with the header X-Pushpipe-Key: HMAC(app key, "sdk|<app>").
The app key (`key_for`) of an app of the registry (schemas/apps.py) is its own, derived from the receipt key
and the app's callback salt: `pushpipe app rotate-secret APP --callback` makes a new salt, and every
signature and SDK key the app had stops working. An app not in the registry has the receipt key itself, as
before apps existed (refused instead with `app_registry_required`).
A leaked signature lets its holder post receipts for that one vendor and app, nothing else.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from pushpipe.schemas.apps import App, callback_key

CONSOLE = "-"  # the app part of a console-configured receipt URL: the app is in each receipt
SIG_CHARS = 22  # 132 bits of the HMAC: short enough for Xiaomi's and Meizu's 128-byte callback limit
CALLBACK_MAX_BYTES = 128  # Xiaomi, Meizu, vivo: a longer callback URL is refused


def key_for(receipt_key: bytes, app: App | None) -> bytes:
    """The key that signs `app`'s callback URLs and SDK key: its own for a registered app, else the receipt key."""
    return receipt_key if app is None else callback_key(receipt_key, app)


def signature(key: bytes, vendor: str, app_id: str) -> str:
    """The URL signature for receipts of `vendor` about `app_id` ("" for a console-configured URL)."""
    return _mac(key, f"{vendor}|{app_id}")[:SIG_CHARS]


def sdk_key(key: bytes, app_id: str) -> str:
    """The key an app's SDK sends with its events."""
    return _mac(key, f"sdk|{app_id}")


def valid(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def callback_url(base_url: str, key: bytes, vendor: str, app_id: str) -> str:
    """Where `vendor` posts receipts of messages of `app_id` (per message: Xiaomi, OPPO, vivo, Meizu)."""
    return f"{base_url.rstrip('/')}/r/{vendor}/{app_id}/{signature(key, vendor, app_id)}"


def console_url(base_url: str, key: bytes, vendor: str) -> str:
    """The receipt URL to set in `vendor`'s console (HMS, Honor)."""
    return f"{base_url.rstrip('/')}/r/{vendor}/{CONSOLE}/{signature(key, vendor, '')}"


def load_key(path: Path, create: bool = False) -> bytes:
    """The key in `path`; with `create`, a new random one is written first if there is none (mode 0600)."""
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip().encode()


def _mac(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
