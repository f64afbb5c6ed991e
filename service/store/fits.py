"""A stream's fitted risk policies and calibrators (API.md section 10): one ``xent_fits`` row per
version, the request that fitted it and its figures as one JSON object. Versions count from 1 per
(stream, kind, name); fitting again adds the next one, and the newest is the one in use."""

from __future__ import annotations

from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.store.schema import fits

__all__ = ["Kind", "get_fit", "list_fits", "put_fit"]

Kind = Literal["policy", "calibrator"]


def put_fit(
    conn: Connection, *, stream: str, kind: Kind, name: str, fitted_at: float, body: dict[str, Any]
) -> int:
    """Store ``body`` as the next version of (stream, kind, name); returns the version. Two
    fits of one name at once: one of them fails on the primary key (the caller retries)."""
    newest = conn.execute(
        sa.select(sa.func.max(fits.c.version)).where(
            fits.c.stream == stream, fits.c.kind == kind, fits.c.name == name
        )
    ).scalar()
    version = int(newest or 0) + 1
    conn.execute(
        fits.insert(),
        {
            "stream": stream,
            "kind": kind,
            "name": name,
            "version": version,
            "fitted_at": fitted_at,
            "body": orjson.dumps(body).decode(),
        },
    )
    return version


def _row(version: int, fitted_at: float, body: str) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(body)
    out["version"], out["fitted_at"] = int(version), float(fitted_at)
    return out


def get_fit(
    conn: Connection, *, stream: str, kind: Kind, name: str, version: int | None = None
) -> dict[str, Any] | None:
    """The newest version of (stream, kind, name), or the given ``version``; None if absent."""
    q = sa.select(fits.c.version, fits.c.fitted_at, fits.c.body).where(
        fits.c.stream == stream, fits.c.kind == kind, fits.c.name == name
    )
    if version is not None:
        q = q.where(fits.c.version == version)
    row = conn.execute(q.order_by(fits.c.version.desc()).limit(1)).first()
    return None if row is None else _row(*row)


def list_fits(conn: Connection, *, stream: str, kind: Kind) -> list[dict[str, Any]]:
    """The newest version of each name of ``kind`` in ``stream``, by name (with ``name``)."""
    newest = (
        sa.select(fits.c.name, sa.func.max(fits.c.version).label("version"))
        .where(fits.c.stream == stream, fits.c.kind == kind)
        .group_by(fits.c.name)
        .subquery()
    )
    q = (
        sa.select(fits.c.name, fits.c.version, fits.c.fitted_at, fits.c.body)
        .join(newest, (fits.c.name == newest.c.name) & (fits.c.version == newest.c.version))
        .where(fits.c.stream == stream, fits.c.kind == kind)
        .order_by(fits.c.name)
    )
    return [{"name": str(row[0]), **_row(*row[1:])} for row in conn.execute(q)]
