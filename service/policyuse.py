"""A batch request's ``"flag": {"policy": name}`` and ``"calibrator": name`` (API.md section
10): the stream's newest version of each, read from the store; a policy becomes the acceptance
thresholds of :class:`xentcore.types.FlagRules`, and the answer shows what was applied in its
``policy`` and ``calibrated`` blocks."""

from __future__ import annotations

import math
from typing import Any

from fastapi import HTTPException

from service.store import Store
from service.store.fits import Kind

__all__ = ["calibrated_block", "policy_block", "read_fit", "thresholds_of"]


def read_fit(
    store: Store | None, stream: str | None, kind: Kind, name: str, loc: list[str]
) -> dict[str, Any]:
    """The newest version of the policy (or calibrator) ``name`` of ``stream``: 422 at ``loc``
    without a stream, 404 when there is no such fit, 503 when the store cannot answer."""
    if stream is None:
        raise HTTPException(
            422,
            [
                {
                    "loc": ["body", *loc],
                    "msg": f"a {kind} belongs to a stream: send `stream` too",
                    "type": "value_error",
                }
            ],
        )
    if store is None:
        raise HTTPException(503, "monitoring store unavailable")
    try:
        found = store.get_fit(stream, kind, name)
    except Exception:
        raise HTTPException(503, "monitoring store unavailable") from None
    if found is None:
        raise HTTPException(404, f"no {kind} {name!r} in stream {stream!r}")
    return found


def thresholds_of(policy: dict[str, Any], n_classes: int) -> tuple[float, ...]:
    """The acceptance thresholds of a stored policy: one, or one per class (a class without
    a threshold, or beyond those fitted, accepts nothing); infeasible: nothing is accepted."""
    if not policy.get("feasible"):
        return (math.inf,)
    per_class = policy.get("thresholds")
    if per_class is None:
        return (float(policy["threshold"]),)
    out = []
    for k in range(max(n_classes, 1)):
        value = per_class.get(str(k))
        out.append(math.inf if value is None else float(value))
    return tuple(out)


def policy_block(name: str, policy: dict[str, Any]) -> dict[str, Any]:
    """The response's ``policy`` block."""
    out: dict[str, Any] = {"name": name, "version": policy["version"]}
    if policy.get("thresholds") is not None:
        out["thresholds"] = policy["thresholds"]
    else:
        out["threshold"] = policy.get("threshold")
    out.update(alpha=policy["alpha"], delta=policy["delta"], feasible=policy["feasible"])
    return out


def calibrated_block(name: str, fit: dict[str, Any]) -> dict[str, Any]:
    """The response's ``calibrated`` block: name, version, method and its parameters."""
    params = ("temperature",) if fit["method"] == "temperature" else ("a", "b")
    return {
        "name": name,
        "version": fit["version"],
        "method": fit["method"],
        **{k: fit[k] for k in params},
    }
