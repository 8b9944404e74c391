"""Dev credentials: an APNs-style .p8 key (EC P-256, PKCS#8 PEM) for demos, tests and the simulator."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def generate_p8(path: Path) -> str:
    """Write a new private key to `path` (mode 0600, like Apple's AuthKey_<kid>.p8); return its public PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_pem(pem.decode())


def public_pem(private_pem: str) -> str:
    """The SubjectPublicKeyInfo PEM that verifies tokens signed with `private_pem`."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def new_key_id() -> str:
    """A 10-character id shaped like Apple's key and team ids."""
    return secrets.token_hex(5).upper()
