"""Whether a scheduler address (``--scheduler``, ``--scheduler-file``) answers as dask does.

``distributed.Client(address, timeout=...)`` bounds the TCP connect, not dask's handshake: an
address that accepts connections and then says nothing (a silent listener) or something else
(an HTTP server, e.g. the dashboard's port 8787 given for the scheduler's 8786) made the run
wait for ever, or fail with ``MemoryError: Unable to allocate 3.07 EiB`` (an HTTP reply read
as dask's frame lengths). A dask server writes its handshake as soon as a connection opens
(``distributed.comm.core.Comm.handshake_info``): a message whose first 8 bytes count its
frames. Hand-written because distributed offers no call that checks an address within a
time limit; only plain ``tcp://`` addresses are probed (TLS and other transports go to
distributed as they are).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket

from ..errors import ConfigError

__all__ = ["probe_scheduler", "scheduler_file_address"]

#: the most frames a handshake message has (it has one or a few)
_MAX_FRAMES = 64


def scheduler_file_address(path: str | os.PathLike) -> str:
    """The ``address`` of a dask scheduler file.

    Raises
    ------
    ConfigError
        A file that is no JSON object naming an address (distributed: ``AssertionError``).
    """
    try:
        with open(path, encoding="utf-8") as fh:
            address = json.load(fh).get("address")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{os.fspath(path)}: not a dask scheduler file (a JSON object with "
                          f"an 'address'): {type(exc).__name__}") from exc
    if not isinstance(address, str) or not address:
        raise ConfigError(f"{os.fspath(path)}: not a dask scheduler file (a JSON object with "
                          f"an 'address')")
    return address


def probe_scheduler(address: str, seconds: float) -> None:
    """Check that a ``tcp://`` address answers with dask's handshake within ``seconds``.

    A refused or unreachable address is left to distributed (its own one line).

    Raises
    ------
    ConfigError
        The address accepted the connection but sent nothing, or something that is not
        dask's protocol.
    """
    scheme, _, where = address.rpartition("://")
    if scheme not in ("tcp", "") or ":" not in where:
        return
    host, _, port = where.rpartition(":")
    try:
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=seconds)
    except (OSError, ValueError):
        return
    with contextlib.closing(sock):
        sock.settimeout(seconds)
        head = b""
        try:
            while len(head) < 8:
                more = sock.recv(8 - len(head))
                if not more:
                    break
                head += more
        except OSError:  # socket.timeout too
            pass
    if len(head) < 8:
        raise ConfigError(f"{address}: accepts connections but did not answer as a dask "
                          f"scheduler within {seconds:g} s (is it the dashboard's port, not "
                          f"the scheduler's?)")
    if not 1 <= int.from_bytes(head, "little") <= _MAX_FRAMES:
        raise ConfigError(f"{address}: answers, but not with dask's protocol (is it the "
                          f"dashboard's port, not the scheduler's?)")
