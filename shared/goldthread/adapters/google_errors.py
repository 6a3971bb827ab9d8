"""One translation of Google API errors into goldthread's exception tree, shared by the Firestore,
Pub/Sub and BigQuery adapters.

Transient (retry): unavailable, deadline, 429/resource exhausted, 5xx, aborted, transport and
connection failures. Configuration (a person must act): missing credentials, permission denied, bad
requests, failed preconditions such as a missing index. Anything else is permanent. Each adapter says
which transient class it raises and may add vendor-specific cases before calling ``classify``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from goldthread.errors import ConfigError, GoldthreadError, PermanentError, TransientError

Kind = Literal["transient", "config", "permanent"]


def classify(exc: BaseException) -> Kind:
    """Which side of the transient / configuration / permanent line a Google client error falls on."""
    from concurrent.futures import TimeoutError as FutureTimeout

    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    transient = (
        gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.TooManyRequests, gexc.ResourceExhausted,
        gexc.InternalServerError, gexc.BadGateway, gexc.GatewayTimeout, gexc.Aborted, gexc.Cancelled,
        gexc.Unknown, gexc.RetryError, auth_exc.TransportError, FutureTimeout, ConnectionError, TimeoutError,
        requests.exceptions.ConnectionError, requests.exceptions.Timeout,
    )
    if isinstance(exc, transient):
        return "transient"
    if isinstance(exc, gexc.Forbidden) and "rateLimitExceeded" in str(exc):
        return "transient"
    config = (
        auth_exc.DefaultCredentialsError, gexc.Unauthenticated, gexc.Unauthorized, gexc.PermissionDenied,
        gexc.Forbidden, gexc.FailedPrecondition, gexc.InvalidArgument, gexc.MethodNotImplemented,
    )
    return "config" if isinstance(exc, config) else "permanent"


def translate(exc: BaseException, message: str, transient: type[TransientError]) -> GoldthreadError:
    """The goldthread error for ``exc``: ``transient(message)``, ``ConfigError`` or ``PermanentError``."""
    kind = classify(exc)
    if kind == "transient":
        return transient(message)
    return ConfigError(message) if kind == "config" else PermanentError(message)


@contextmanager
def translated(
    action: str, translate_fn: object, passthrough: tuple[type[BaseException], ...] = (GoldthreadError,)
) -> Iterator[None]:
    """Run a block, re-raising ``passthrough`` errors and translating every other one with ``translate_fn``."""
    try:
        yield
    except passthrough:
        raise
    except Exception as exc:
        raise translate_fn(exc, action) from exc  # type: ignore[operator]
