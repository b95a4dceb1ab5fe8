"""Ray's key-value store, which the driver and every trial of a cluster read: small notes
between them (the checkpoint bar, a trial's failure that a restart would meet again). Any
failure to write or read counts as no note: each reader treats a missing one as the safe case.
"""

from __future__ import annotations

import contextlib

_NAMESPACE = "hpo"


def put(key: str, value: str) -> None:
    with contextlib.suppress(Exception):  # no Ray, or a Ray that moved it: no note
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(key, value, overwrite=True, namespace=_NAMESPACE)


def get(key: str) -> str | None:
    try:
        from ray.experimental import internal_kv

        value = internal_kv._internal_kv_get(key, namespace=_NAMESPACE)
        return value.decode() if value else None
    except Exception:
        return None


def delete(key: str, by_prefix: bool = False) -> None:
    with contextlib.suppress(Exception):
        from ray.experimental import internal_kv

        internal_kv._internal_kv_del(key, del_by_prefix=by_prefix, namespace=_NAMESPACE)
