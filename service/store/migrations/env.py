"""Alembic environment of the monitoring store: runs on the connection the store hands it.

``service.store.migrate`` opens the connection, takes the migration lock and passes the
connection in ``config.attributes["connection"]``; there is no ``alembic.ini`` and no URL here.
"""

from __future__ import annotations

from alembic import context

from service.store.migrate import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
