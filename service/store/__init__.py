"""The monitoring store (API.md section 5): SQLite by default, PostgreSQL by URL.

``XENT_DATABASE_URL`` picks the database by its scheme (``sqlite:///path`` or
``postgresql://user@host/db``); without it the store is the SQLite file ``xent.db`` under
``XENT_DATA_DIR``. The service talks to the store only through :class:`Store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from service.store.sql import FlaggedRow, SqlStore, StoredBatch
from xentcore.summary import BatchSummary

__all__ = ["FlaggedRow", "Store", "StoredBatch", "open_store", "store_url"]


class Store(Protocol):
    """What the service needs of a monitoring store."""

    def ping(self) -> bool:
        """True when the store answers (used by /readyz)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def record(
        self,
        *,
        stream: str,
        task: str,
        summary: BatchSummary,
        flagged: Sequence[FlaggedRow],
        idempotency_key: str | None = None,
        at: float | None = None,
    ) -> bool:
        """Write a batch and its flagged items atomically.

        True when written, False when the idempotency key was already recorded; raises on
        store errors.
        """
        ...

    def batches_in(
        self, stream: str, since: float | None = None, until: float | None = None
    ) -> list[StoredBatch]:
        """The batches of a stream in [since, until), oldest first."""
        ...

    def stream_names(self) -> list[tuple[str, float, int]]:
        """(stream, last-seen epoch seconds, batch count) of every stream."""
        ...

    def flagged(
        self,
        stream: str,
        *,
        since: float | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Flagged items, newest first, and the next page's cursor."""
        ...


def store_url(database_url: str | None, data_dir: Any) -> str:
    """The store's SQLAlchemy URL: the setting, or the SQLite file under the data directory."""
    if database_url:
        return database_url
    return f"sqlite:///{data_dir}/xent.db"


def open_store(settings: Any) -> Store:
    """Open (and migrate) the store the settings name."""
    return SqlStore.from_url(store_url(settings.database_url, settings.data_dir))
