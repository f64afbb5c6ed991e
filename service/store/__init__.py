"""The monitoring store (README, "Monitoring"): SQLite by default, PostgreSQL by URL.

``XENT_DATABASE_URL`` picks the database by its scheme (``sqlite:///path`` or
``postgresql://user@host/db``); without it the store is the SQLite file ``xent.db`` under
``XENT_DATA_DIR``. The service talks to the store only through :class:`Store`
(``service.store.base``); ``service.store.sql`` implements it over the tables of
``service.store.schema`` (migrated by ``service.store.migrate``), ``service.store.windows``
plans windowed reads over its rollups, and ``service.store.reconnecting`` wraps it so that the
service starts while the database is down.
"""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING

from service.store.base import (
    InvalidCursor,
    Store,
    StoredBatch,
    StoreUnavailable,
    StreamInfo,
    Sums,
)
from service.store.payload import FlaggedItems
from service.store.reconnecting import ReconnectingStore
from service.store.sql import SqlStore
from service.store.sums import StreamsTable, SumsTable

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = [
    "FlaggedItems",
    "InvalidCursor",
    "ReconnectingStore",
    "Store",
    "StoreUnavailable",
    "StoredBatch",
    "StreamInfo",
    "StreamsTable",
    "SumsTable",
    "Sums",
    "open_store",
    "store_url",
]


def store_url(database_url: str | None, data_dir: str | PathLike[str]) -> str:
    """The store's SQLAlchemy URL: the setting, or the SQLite file ``xent.db`` under the data
    directory (``sqlite:///<data_dir>/xent.db``)."""
    if database_url:
        return database_url
    return f"sqlite:///{data_dir}/xent.db"


def open_store(settings: Settings) -> Store:
    """Open (and migrate) the store the settings name; raises when the database is unreachable."""
    url = store_url(settings.database_url, settings.data_dir)
    return SqlStore.from_url(url, timeout=settings.store_timeout)
