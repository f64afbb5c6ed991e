"""A batch request's ``"flag": {"policy": name}`` (API.md section 10): the stream's newest
version of the policy, read from the store, turned into the acceptance thresholds of
:class:`xentcore.types.FlagRules` and shown in the response's ``policy`` block."""

from __future__ import annotations

import math
from typing import Any

from fastapi import HTTPException

from service.store import Store

__all__ = ["policy_block", "read_policy", "thresholds_of"]


def read_policy(store: Store | None, stream: str | None, name: str) -> dict[str, Any]:
    """The newest version of policy ``name`` of ``stream``: 422 without a stream, 404 when
    there is no such policy, 503 when the store cannot answer."""
    if stream is None:
        raise HTTPException(
            422,
            [
                {
                    "loc": ["body", "flag", "policy"],
                    "msg": "a policy belongs to a stream: send `stream` too",
                    "type": "value_error",
                }
            ],
        )
    if store is None:
        raise HTTPException(503, "monitoring store unavailable")
    try:
        found = store.get_fit(stream, "policy", name)
    except Exception:
        raise HTTPException(503, "monitoring store unavailable") from None
    if found is None:
        raise HTTPException(404, f"no policy {name!r} in stream {stream!r}")
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
