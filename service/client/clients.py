"""``Client`` and ``AsyncClient``: each public method is a builder of ``service.client.endpoints``
(which makes the whole :class:`~service.client.endpoints.Request`) and this module only sends it,
blocking or awaited. A method has its builder's name, docstring and parameters (without the
client), and returns the builder's response model (awaitable for ``AsyncClient``).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import httpx
from pydantic import BaseModel

from service.client import endpoints
from service.client.endpoints import Request, Target

__all__ = ["AsyncClient", "Client"]

P = ParamSpec("P")
R = TypeVar("R", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
H = TypeVar("H", bound=httpx.Client | httpx.AsyncClient)


def _pieces(parts: list[bytes | memoryview]) -> bytes | Iterator[bytes]:
    """httpx content: one piece as it is, several as a stream (Content-Length is set)."""
    if len(parts) == 1:
        return bytes(parts[0])
    return (piece if isinstance(piece, bytes) else piece.tobytes() for piece in parts)


async def _async_pieces(parts: list[bytes | memoryview]) -> AsyncIterator[bytes]:
    """The same pieces for the async client."""
    for piece in parts:
        yield piece if isinstance(piece, bytes) else piece.tobytes()


def _like(build: Callable[..., Request[Any]], method: F, owner: str) -> F:
    """``method`` of class ``owner`` named and documented as ``build``, with its signature:
    ``self`` for the client, and the response model ``R`` of ``Request[R]`` as the return
    annotation."""
    functools.update_wrapper(method, build)
    method.__module__, method.__qualname__ = __name__, f"{owner}.{build.__name__}"
    (model,) = typing.get_args(typing.get_type_hints(build)["return"])
    signature = inspect.signature(build)
    _, *rest = signature.parameters.values()
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self, *rest], return_annotation=model.__name__
    )
    return method


def _blocking(
    build: Callable[Concatenate[Target, P], Request[R]],
) -> Callable[Concatenate[Client, P], R]:
    """The :class:`Client` method that sends what ``build`` makes."""

    def method(client: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return client._send(build(client, *args, **kwargs))

    return _like(build, method, "Client")


def _awaiting(
    build: Callable[Concatenate[Target, P], Request[R]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, R]]:
    """The :class:`AsyncClient` method that sends what ``build`` makes."""

    async def method(client: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await client._send(build(client, *args, **kwargs))

    return _like(build, method, "AsyncClient")


class _Base(Generic[H]):
    """The constructor of both clients: ``base_url`` (a trailing ``/`` dropped), ``api_key``
    (sent as ``Authorization: Bearer <key>``), ``binary_threshold`` (see ``service.client``),
    and ``http``, an httpx client to use as it is, else one opened on ``base_url`` with
    ``timeout`` seconds."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        binary_threshold: int | None = 65_536,
        http: H | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.binary_threshold = binary_threshold
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http: H = http or self._open(timeout)

    def _open(self, timeout: float) -> H:
        raise NotImplementedError


class Client(_Base[httpx.Client]):
    """Blocking client. Options are the request fields of the HTTP API (``task=``, ...)."""

    def _open(self, timeout: float) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def _send(self, request: Request[R]) -> R:
        """Send ``request`` (its method, path, body pieces, query params and headers) and read
        its answer (:class:`XentError` for an error answer)."""
        content = _pieces(request.parts) if request.parts else None
        response = self.http.request(
            request.method,
            request.path,
            content=content,
            params=request.params,
            headers=request.headers,
        )
        return request.answer(response)

    score = _blocking(endpoints.score)
    loss = _blocking(endpoints.loss)
    confidence = _blocking(endpoints.confidence)
    flag = _blocking(endpoints.flag)
    calibration = _blocking(endpoints.calibration)
    score_sequences = _blocking(endpoints.score_sequences)
    label = _blocking(endpoints.label)
    record_summary = _blocking(endpoints.record_summary)
    items = _blocking(endpoints.items)
    summary = _blocking(endpoints.summary)
    flagged = _blocking(endpoints.flagged)
    streams = _blocking(endpoints.streams)
    put_policy = _blocking(endpoints.put_policy)
    policy = _blocking(endpoints.policy)
    policies = _blocking(endpoints.policies)
    risk_coverage = _blocking(endpoints.risk_coverage)
    put_calibrator = _blocking(endpoints.put_calibrator)
    calibrator = _blocking(endpoints.calibrator)
    calibrators = _blocking(endpoints.calibrators)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base[httpx.AsyncClient]):
    """The same methods as :class:`Client`, awaitable."""

    def _open(self, timeout: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def _send(self, request: Request[R]) -> R:
        """Send ``request`` (its method, path, body pieces, query params and headers) and read
        its answer (:class:`XentError` for an error answer)."""
        content = _async_pieces(request.parts) if request.parts else None
        response = await self.http.request(
            request.method,
            request.path,
            content=content,
            params=request.params,
            headers=request.headers,
        )
        return request.answer(response)

    score = _awaiting(endpoints.score)
    loss = _awaiting(endpoints.loss)
    confidence = _awaiting(endpoints.confidence)
    flag = _awaiting(endpoints.flag)
    calibration = _awaiting(endpoints.calibration)
    score_sequences = _awaiting(endpoints.score_sequences)
    label = _awaiting(endpoints.label)
    record_summary = _awaiting(endpoints.record_summary)
    items = _awaiting(endpoints.items)
    summary = _awaiting(endpoints.summary)
    flagged = _awaiting(endpoints.flagged)
    streams = _awaiting(endpoints.streams)
    put_policy = _awaiting(endpoints.put_policy)
    policy = _awaiting(endpoints.policy)
    policies = _awaiting(endpoints.policies)
    risk_coverage = _awaiting(endpoints.risk_coverage)
    put_calibrator = _awaiting(endpoints.put_calibrator)
    calibrator = _awaiting(endpoints.calibrator)
    calibrators = _awaiting(endpoints.calibrators)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
