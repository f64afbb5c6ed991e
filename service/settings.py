"""Service settings, read from ``XENT_*`` environment variables (and nowhere else).

Settings fail loudly: an invalid value stops ``xent serve`` with exit status 2 and a message that
names the variable (an unsupported ``XENT_DATABASE_URL`` scheme included), and an ``XENT_*``
variable that is no setting (a typo such as ``XENT_API_KEY``) is reported at start with the
closest setting (:func:`unknown_variables`).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.durations import parse_duration
from service.names import LogLevel

__all__ = [
    "DATABASE_SCHEMES",
    "report_invalid",
    "ENV_PREFIX",
    "LogLevel",
    "Settings",
    "get_settings",
    "unknown_variables",
]

MiB = 1 << 20
ENV_PREFIX = "XENT_"
#: Variables under the prefix that belong to the project's own test suite, not the service.
TEST_PREFIX = "XENT_TEST_"
#: Variables under the prefix that the project's other files read: docker-compose.yml
#: (XENT_PUBLISH, and XENT_METRICS_TOKEN_FILE for its Prometheus) and the Kubernetes Secret's
#: key that the ServiceMonitor sends (XENT_METRICS_TOKEN, one of XENT_API_KEYS).
NOT_SETTINGS = frozenset({"XENT_PUBLISH", "XENT_METRICS_TOKEN", "XENT_METRICS_TOKEN_FILE"})
#: Variables that were settings once, with what to do instead (``unknown_variables``).
RETIRED = {
    "XENT_METRICS_REQUIRE_KEY": "no longer a setting: GET /metrics needs an API key whenever "
    "XENT_API_KEYS is set, unless XENT_METRICS_PUBLIC=true",
}
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
#: URL schemes of ``XENT_DATABASE_URL`` the store opens (``service.store.sql.engine_for``).
DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg")


def _split(value: object) -> object:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; lists pass through (``Settings(api_keys=[...])``)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the service. Environment variable = ``XENT_`` + the upper-cased name.

    List settings (``api_keys``, ``cors_origins``) are comma-separated strings in the
    environment, not JSON.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Interface `xent serve` binds to.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port of `xent serve`.")
    workers: int = Field(1, ge=1, description="uvicorn worker processes of `xent serve`.")
    log_level: LogLevel = Field("info", description="Log level of the service and uvicorn.")
    database_url: str | None = Field(
        None,
        repr=False,
        description="Monitoring store: `postgresql://...` or `sqlite:///path`; "
        "default a SQLite file in `data_dir`.",
    )
    data_dir: Path = Field(Path("./data"), description="Directory of the default SQLite store.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="Comma-separated API keys; when set, every /v1 route needs one.",
    )
    metrics_public: bool = Field(
        False,
        description="Serve GET /metrics without an API key even when `api_keys` is set (for a "
        "scraper that cannot send one); by default /metrics needs a key like /v1.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS (none: off)."
    )
    max_body_bytes: int = Field(64 * MiB, ge=1, description="Largest request body (413 above).")
    max_items: int = Field(1_000_000, ge=1, description="Most items (N) per batch (413 above).")
    max_elements: int = Field(
        50_000_000, ge=1, description="Most numbers (N x K, or tokens) per batch (413 above)."
    )
    min_confidence: float = Field(
        0.5, ge=0, le=1, description="`flag.min_confidence` when a request has no `flag` object."
    )
    sum_tolerance: float = Field(
        1e-4, ge=0, le=1, description="Default tolerance of multiclass row sums."
    )
    max_concurrency: int = Field(
        8, ge=1, description="Scoring requests in flight at once; more get 503 + Retry-After."
    )
    max_store_reads: int = Field(
        4,
        ge=1,
        description="Monitoring reads (/v1/streams...) running at once in each process; more "
        "wait up to 1 s, then get 503 + Retry-After, so dashboards cannot take the database.",
    )
    inline_body_bytes: int = Field(
        16 * 1024,
        ge=0,
        description="Bodies up to this size are scored on the event loop (their work takes "
        "less than the hop to a worker thread); larger ones in a worker thread.",
    )
    fast_lane: bool = Field(
        True,
        description="Answer small plain JSON batches (score, loss, confidence, flag; no "
        "stream) on a lean request path, the same answers byte for byte; false sends every "
        "request through the full middleware stack.",
    )
    retry_after_seconds: int = Field(1, ge=0, description="`Retry-After` of a 503.")
    body_timeout: float = Field(
        60.0, gt=0, description="Seconds a client has to send a whole request body (408 after)."
    )
    keep_alive_timeout: int = Field(5, ge=1, description="uvicorn idle keep-alive, seconds.")
    max_connections: int | None = Field(
        None, ge=1, description="uvicorn `--limit-concurrency`: open connections (503 above)."
    )
    max_streams: int = Field(
        1000,
        ge=1,
        description="Distinct stream labels in /metrics; further streams are counted under "
        "`other` (they are still recorded in the store).",
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a client has to send a request's line and headers (`xent serve`); "
        "the connection is closed after (408 if part of them arrived).",
    )
    max_header_bytes: int = Field(
        65_536,
        ge=1024,
        description="Largest request line plus headers (`xent serve`); 431 above.",
    )
    retention: int = Field(
        "30d",  # a duration, validated into seconds
        validate_default=True,
        description="How long raw batch rows and flagged items are kept (a duration: 30s, 5m, "
        "1h, 30d, 2w); summaries of older windows read the rollups.",
    )
    rollup_retention: int = Field(
        "400d",
        validate_default=True,
        description="How long the minute, hour and day rollups are kept (a duration).",
    )
    item_retention: int = Field(
        "30d",
        validate_default=True,
        description="How long kept items (API.md section 9) are kept (a duration).",
    )
    keep_row_max_classes: int = Field(
        1024,
        ge=0,
        le=65536,
        description="Kept items keep their K log-probabilities (multiclass) or probabilities "
        "(multilabel) when K is at most this; above it a late label gives correctness but no "
        "loss (API.md section 9).",
    )
    threads: int = Field(
        1,
        ge=1,
        le=64,
        description="Threads that score the rows of one large logits batch (xentcore's "
        "`threads`); 1 keeps each request on one core, as workers already share the cores.",
    )
    max_calibration_items: int = Field(
        1_000_000,
        ge=1,
        le=100_000_000,
        description="Fits and risk-coverage curves (API.md section 10) read at most this many "
        "calibration items of their window, the newest (`truncated` says when there were more).",
    )
    retention_interval: int = Field(
        "5m",
        validate_default=True,
        description="How often each process deletes what is past retention (a duration; on "
        "PostgreSQL one process at a time runs it).",
    )
    store_timeout: float = Field(
        2.0,
        gt=0,
        le=3600,
        description="Deadline in seconds of every monitoring-store operation (connect, pool "
        "checkout, statement): past it a batch is answered with `recorded: false` and a read "
        "with 503.",
    )
    shutdown_timeout: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds `xent serve` waits for requests in flight after SIGTERM before it "
        "closes their connections and exits.",
    )
    store_retry_seconds: float = Field(
        5.0,
        gt=0,
        description="Seconds between attempts to reopen a monitoring store that failed to open.",
    )

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split(value)

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        """Only the schemes the store opens; the message names the scheme, never the URL."""
        if value is None:
            return None
        scheme, sep, _ = value.partition("://")
        if not sep or not scheme:
            raise ValueError(
                "expected a URL such as sqlite:///path/to/xent.db or "
                "postgresql://user@host:5432/db (no scheme found)"
            )
        if scheme.lower() not in DATABASE_SCHEMES:
            shown = scheme if len(scheme) <= 40 else scheme[:40] + "..."
            raise ValueError(
                f"unsupported scheme {shown!r}: the store is SQLite (sqlite:///path) or "
                "PostgreSQL (postgresql://user@host:5432/db)"
            )
        return value

    @field_validator(
        "retention", "rollup_retention", "item_retention", "retention_interval", mode="before"
    )
    @classmethod
    def _duration(cls, value: object) -> object:
        """A duration such as ``30d`` -> seconds (a positive int passes through)."""
        if isinstance(value, str):
            return parse_duration(value)
        if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
            raise ValueError("expected a positive duration such as 30s, 5m, 1h, 30d or 2w")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings()


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``XENT_*`` variable of ``environ`` that is no setting.

    Names are matched like the settings themselves, without regard to case. Each warning names
    the variable and, when one is close (difflib), the setting it was probably meant to be:
    ``XENT_API_KEY is not a setting (did you mean XENT_API_KEYS?); it is ignored``. Variables
    starting with ``XENT_TEST_`` belong to the test suite, and those of :data:`NOT_SETTINGS`
    to the deployment files: they are left alone. A retired setting (:data:`RETIRED`) is named
    with what replaced it. And since the metrics token of the deployment files must be one of
    the API keys, an ``XENT_METRICS_TOKEN`` that is not is reported too (never its value).
    """
    known = sorted(ENV_PREFIX + name.upper() for name in Settings.model_fields)
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(TEST_PREFIX):
            continue
        if upper in known or upper in NOT_SETTINGS:
            continue
        if upper in RETIRED:
            warnings.append(f"{name} is {RETIRED[upper]}; it is ignored")
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else " (see the README's Settings)"
        warnings.append(f"{name} is not a setting{hint}; it is ignored")
    warnings.extend(_metrics_token_warnings({k.upper(): v for k, v in environ.items()}))
    return warnings


def _metrics_token_warnings(environ: Mapping[str, str]) -> list[str]:
    """``XENT_METRICS_TOKEN`` (what the ServiceMonitor sends) must be one of the API keys."""
    token = environ.get("XENT_METRICS_TOKEN", "").strip()
    keys = [key.strip() for key in environ.get("XENT_API_KEYS", "").split(",") if key.strip()]
    public = environ.get("XENT_METRICS_PUBLIC", "").strip().lower() in _TRUE
    if not token or not keys or public or token in keys:
        return []
    return [
        "XENT_METRICS_TOKEN is not one of XENT_API_KEYS: a Prometheus scraping /metrics with it "
        "gets 401 (add it to XENT_API_KEYS)"
    ]


def report_invalid(command: str, exc: ValidationError) -> None:
    """One line per invalid setting, naming the variable; never the value (a URL may hold a
    password)."""
    for err in exc.errors(include_url=False, include_input=False):
        name = "XENT_" + str(err["loc"][0]).upper() if err["loc"] else "settings"
        message = str(err["msg"]).removeprefix("Value error, ")
        print(f"{command}: invalid {name}: {message}", file=sys.stderr)
