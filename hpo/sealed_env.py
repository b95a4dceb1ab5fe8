"""Secrets for a Ray Job, sealed with the cluster's Ray auth token.

Ray keeps a job's runtime_env in its job table and its runtime-env agent logs it, so a key
passed as a plain `env_vars` entry lands in Ray's logs. `hpo submit` instead passes one
variable, HPO_SEALED_ENV: the secrets encrypted (AES-GCM) with a key derived from the Ray token
that the submitter and every node already hold. Each hpo process on the cluster (the driver,
and every trial worker as it imports hpo) opens it into its own environment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from pathlib import Path

SEALED = "HPO_SEALED_ENV"


def ray_token() -> str | None:
    """The Ray auth token, found as Ray does: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.path.isfile(path):
        return Path(path).read_text().strip() or None
    return None


def _key(token: str) -> bytes:
    return hashlib.sha256(b"hpo-sealed-env/1:" + token.encode()).digest()


def seal(values: dict[str, str], token: str) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    sealed = AESGCM(_key(token)).encrypt(nonce, json.dumps(values).encode(), None)
    return base64.b64encode(nonce + sealed).decode()


def unseal(text: str, token: str) -> dict[str, str]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    raw = base64.b64decode(text)
    values = json.loads(AESGCM(_key(token)).decrypt(raw[:12], raw[12:], None))
    return {str(k): str(v) for k, v in values.items()}


def unseal_into_environ() -> None:
    """Open HPO_SEALED_ENV (when set) into os.environ; a wrong or missing token says so."""
    text = os.environ.pop(SEALED, None)
    if not text:
        return
    token = ray_token()
    try:
        if token is None:
            raise ValueError("no Ray auth token on this node")
        values = unseal(text, token)
    except Exception as err:  # a bad seal must not stop hpo from importing
        print(f"hpo: cannot open the job's secrets ({type(err).__name__}: {err})", file=sys.stderr)
        return
    for name, value in values.items():
        os.environ[name] = value
