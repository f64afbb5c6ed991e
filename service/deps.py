"""The lifecycle of the monitoring store.

Scoring never fails because of the store: it is opened by a :class:`ReconnectingStore` that
retries on use, and closing or pinging it never raises.
"""

from __future__ import annotations

import logging

from service.settings import Settings
from service.store import ReconnectingStore, Store
from service.store import open_store as open_configured_store

__all__ = ["close_store", "open_store", "store_ready"]

log = logging.getLogger("service.store")


def open_store(settings: Settings) -> ReconnectingStore:
    """The monitoring store, reopened on use after a failed open (never raises).

    A store that fails to open at start-up is retried every ``XENT_STORE_RETRY_SECONDS`` by
    the store itself: scoring goes on with ``recorded: false`` and ``/readyz`` answers 503
    until the database answers.
    """
    store = ReconnectingStore(
        lambda: open_configured_store(settings), retry_seconds=settings.store_retry_seconds
    )
    store.ping()  # the first open now, so a healthy store is ready before the first request
    return store


def close_store(store: Store | None) -> None:
    """Close the store, logging (never raising) a failure."""
    if store is None:
        return
    try:
        store.close()
    except Exception:
        log.exception("monitoring store failed to close")


def store_ready(store: Store | None) -> bool:
    """``store.ping()``, False on any failure."""
    if store is None:
        return False
    try:
        return bool(store.ping())
    except Exception:
        log.exception("monitoring store ping failed")
        return False
