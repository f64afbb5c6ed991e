"""File formats: which reader a file name asks for, and what a file's first bytes say it is.

A name's extension gives its format (a compression suffix such as ``.gz`` is looked through:
``eval.csv.gz`` is CSV); ``xent score --format`` overrides it. When a file is not what its format
says, :func:`looks_like` reads its first and last bytes so that the message can say what it is
instead (and which ``--format`` would read it) rather than pass on a reader's own complaint.

>>> format_of("s3://bucket/eval/part-0.snappy.parquet"), format_of("log.jsonl.gz")
('parquet', 'json')
>>> looks_like(b"PAR1\\x15\\x04", b"\\x00PAR1")
'Parquet (--format parquet)'
"""

from __future__ import annotations

__all__ = [
    "ARRAY_FORMATS",
    "FORMAT_CHOICES",
    "FORMAT_NAMES",
    "TABLE_FORMATS",
    "canonical_format",
    "compressed",
    "format_of",
    "looks_like",
]

#: Formats read as numpy arrays (``xentcore.files.sources``) and as tables (through pyarrow).
ARRAY_FORMATS = ("npy", "npz")
TABLE_FORMATS = ("parquet", "ipc", "csv", "json")
#: ``--format`` values: the formats and their other names.
_ALIASES = {"feather": "ipc", "arrow": "ipc", "jsonl": "json", "ndjson": "json"}
FORMAT_CHOICES = (*ARRAY_FORMATS, *TABLE_FORMATS, *_ALIASES)
#: How messages name each format.
FORMAT_NAMES = {
    "npy": ".npy",
    "npz": ".npz",
    "parquet": "Parquet",
    "ipc": "Arrow IPC (Feather)",
    "csv": "CSV",
    "json": "JSON Lines",
}
_EXTENSIONS = {
    ".npy": "npy",
    ".npz": "npz",
    ".parquet": "parquet",
    ".parq": "parquet",
    ".pq": "parquet",
    ".feather": "ipc",
    ".arrow": "ipc",
    ".ipc": "ipc",
    ".csv": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
}
#: Compression suffixes pyarrow looks through for CSV and JSON Lines.
_COMPRESSED = (".gz", ".bz2", ".zst", ".lz4", ".br")


def canonical_format(name: str) -> str:
    """A ``--format`` value -> its format (``feather`` -> ``ipc``, ``jsonl`` -> ``json``)."""
    return _ALIASES.get(name, name)


def compressed(name: str) -> bool:
    """Whether a file name ends in a compression suffix (``.gz``, ``.bz2``, ``.zst``...)."""
    return name.lower().endswith(_COMPRESSED)


def format_of(name: str) -> str | None:
    """The format a file name's extension asks for, or None when it names none."""
    base = name.rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix in _COMPRESSED:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    dot = base.rfind(".")
    return _EXTENSIONS.get(base[dot:]) if dot > 0 else None


def looks_like(head: bytes, tail: bytes) -> str | None:
    """What a file's first bytes (and last bytes) say it is, as a phrase for a message.

    Magic numbers first (Parquet, Arrow IPC, .npy, zip/.npz, gzip), then text: a first
    character ``{`` is JSON Lines, ``[`` a JSON array, other printable text is taken for CSV.
    None when the bytes say nothing recognisable.
    """
    if head.startswith(b"PAR1") and tail.endswith(b"PAR1"):
        return "Parquet (--format parquet)"
    if head.startswith(b"ARROW1"):
        return "Arrow IPC (--format ipc)"
    if head.startswith(b"\x93NUMPY"):
        return "a .npy array (--format npy)"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive such as .npz (--format npz)"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data (name it .csv.gz or .jsonl.gz)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not merely a character cut at the end of ``head``
            return None
        text = head[: exc.start].decode("utf-8")
    text = text.lstrip("\ufeff \t\r\n")
    if not text or not all(c.isprintable() or c in "\t\r\n" for c in text):
        return None
    if text.startswith("{"):
        return "JSON Lines text (--format json)"
    if text.startswith("["):
        return "a JSON array (xent reads JSON Lines: one object a line)"
    return "CSV text (--format csv)"
