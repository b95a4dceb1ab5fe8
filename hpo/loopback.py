"""Keep a Ray that hpo starts on this machine on 127.0.0.1.

Ray 2.60 swaps a node address of 127.0.0.1 for the machine's routable address
(`ray._private.services.resolve_ip_for_localhost`, in `ray.init` and `ray start` alike), and a
node whose address is not loopback has its GCS, raylet and workers listen on every interface:
the embedded Ray of `hpo run` was reachable from the network. With the address left as given,
every server of the node listens on 127.0.0.1 only. A Ray that hpo connects to (`--address`)
is the user's to configure and is not touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def _as_given(host: str) -> str:
    return host


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While it is held, a node started on 127.0.0.1 stays on 127.0.0.1."""
    from ray._private import services

    resolve = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = _as_given
    try:
        yield
    finally:
        services.resolve_ip_for_localhost = resolve
