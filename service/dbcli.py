"""``xent db upgrade | current | expire | index``: the monitoring store's schema, retention and
the kept items' lookup keys, by hand."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_db", "database"]


def database(args: argparse.Namespace) -> int:
    """``xent db upgrade|current|expire|index``: the store's schema, retention and lookup keys,
    by hand."""
    from pydantic import ValidationError

    from service.retention import expire_once
    from service.settings import Settings, report_invalid
    from service.store import store_url
    from service.store.migrate import SchemaTooNew, current_revision, head_revision, upgrade
    from service.store.sql import SqlStore, engine_for

    try:
        settings = Settings()
    except ValidationError as exc:
        report_invalid("xent db", exc)
        return 2
    engine = engine_for(store_url(settings.database_url, settings.data_dir), settings.store_timeout)
    try:
        if args.action == "current":
            with engine.connect() as conn:
                found = current_revision(conn)
            print(
                f"store revision {found or 'none (not under Alembic yet)'}; "
                f"this release: {head_revision()}"
            )
        elif args.action == "upgrade":
            applied = upgrade(engine)
            print(f"store at revision {head_revision()}" + ("" if applied else " (already)"))
        elif args.action == "index":
            store = SqlStore(engine, timeout=settings.store_timeout)
            total = 0
            while n := store.index_items():
                total += n
            print(f"lookup keys written for {total} kept items")
        else:
            store = SqlStore(engine, timeout=settings.store_timeout)
            expire_once(store, settings)
            print("retention pass done (see the log for what was deleted)")
    except SchemaTooNew as exc:
        print(f"xent db: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # an unreachable database: one line, not a traceback
        print(f"xent db: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def add_db(commands: Any) -> None:
    """The ``xent db`` subcommand."""
    db = commands.add_parser(
        "db",
        help="the monitoring store: schema upgrades and retention",
        description="Manage the monitoring store named by XENT_DATABASE_URL (default: the "
        "SQLite file under XENT_DATA_DIR). The service also upgrades the schema when it starts.",
    )
    db.add_argument(
        "action",
        choices=("upgrade", "current", "expire", "index"),
        help="upgrade: apply pending schema migrations (under a lock); current: print the "
        "schema revision; expire: delete what is past retention once (XENT_RETENTION, "
        "XENT_ROLLUP_RETENTION); index: write the lookup keys of every kept batch still "
        "queued (the service does this in the background)",
    )
    db.set_defaults(handler=database)
