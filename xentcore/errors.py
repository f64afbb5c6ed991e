"""The one error type of xentcore: invalid input, with the place it was found."""

from __future__ import annotations

__all__ = ["InputError", "format_location"]

Location = tuple[str | int, ...]


def format_location(location: Location) -> str:
    """Render ``("predictions", 12, 3)`` as ``predictions[12][3]``."""
    head, *rest = location or ("input",)
    return str(head) + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest
    )


class InputError(ValueError):
    """Invalid input to a xentcore function.

    ``location`` is a tuple such as ``("predictions", 12)`` naming the field and index; ``str(err)``
    is the full message, e.g. ``predictions[12]: row sums to 0.87, expected 1 ± 1e-4``, and
    ``reason`` is the message without its location prefix. ``kind`` is a short machine-readable
    error type (``value_error`` unless more specific), used as the ``type`` of an HTTP 422.
    """

    def __init__(self, location: Location, reason: str, *, kind: str = "value_error") -> None:
        self.location: Location = tuple(location)
        self.reason = reason
        self.kind = kind
        super().__init__(f"{format_location(self.location)}: {reason}")
