"""``POST /v1/sequences/score``: perplexity, confidence and flags of generated sequences."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api._docs import ERRORS, request_body
from service.batch import compute, dumps, header_length, in_thread, json_response, read_body
from service.metrics import Metrics
from service.monitoring import record_sequences
from service.parsing import Parsed, parse_sequences
from service.schemas import OpenAILogprobs, SequencesRequest, SequencesResponse
from service.settings import Settings
from xentcore import InputError, SequenceResult, score_sequences
from xentcore.sequences import CENSORED_LOGPROB, openai_logprobs

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["sequences"])


def _openai_content(logprobs: OpenAILogprobs) -> list[dict[str, Any]]:
    """The content list as the mappings ``openai_logprobs`` reads (top_logprobs only where a
    censored value needs them: building them for every token would dominate the cost)."""
    out: list[dict[str, Any]] = []
    for token in logprobs.content:
        entry: dict[str, Any] = {"logprob": token.logprob}
        if token.logprob == CENSORED_LOGPROB and token.top_logprobs:
            entry["top_logprobs"] = [{"logprob": t.logprob} for t in token.top_logprobs]
        out.append(entry)
    return out


def _token_arrays(
    parsed: Parsed[SequencesRequest],
) -> tuple[list[Any], list[npt.NDArray[np.int64] | None], list[str]]:
    """One log-prob array (or list) per sequence, token positions where some were left out,
    and the censoring warnings."""
    arrays: list[Any] = []
    positions: list[npt.NDArray[np.int64] | None] = []
    warnings: list[str] = []
    for i, seq in enumerate(parsed.request.sequences):
        if seq.logprobs is not None:
            values, kept, notes = openai_logprobs(_openai_content(seq.logprobs), i)
            arrays.append(values)
            positions.append(kept)
            warnings.extend(notes)
        else:
            arrays.append(parsed.array(("sequences", i, "token_logprobs"), seq.token_logprobs))
            positions.append(None)
    return arrays, positions, warnings


def _score(parsed: Parsed[SequencesRequest], settings: Settings) -> SequenceResult:
    arrays, positions, warnings = _token_arrays(parsed)
    rules = parsed.request.flag
    try:
        result = score_sequences(
            arrays,
            min_confidence=settings.min_confidence if rules is None else rules.min_confidence,
            min_token_probability=None if rules is None else rules.min_token_probability,
            positions=positions,
        )
    except InputError as exc:
        raise _relocated(exc, parsed.request) from None
    result.warnings[:0] = warnings
    return result


def _relocated(exc: InputError, req: SequencesRequest) -> InputError:
    """Point an error about an OpenAI-form sequence at its ``logprobs.content``."""
    loc = exc.location
    if (
        len(loc) >= 3
        and loc[0] == "sequences"
        and isinstance(loc[1], int)
        and req.sequences[loc[1]].logprobs is not None
    ):
        return InputError(("sequences", loc[1], "logprobs", "content"), exc.reason, kind=exc.kind)
    return exc


def _column(values: npt.NDArray[Any]) -> list[Any]:
    return list(values.tolist())


def _view(req: SequencesRequest, r: SequenceResult, recorded: bool | None) -> dict[str, Any]:
    columns = zip(
        _column(r.n_tokens),
        _column(r.mean_logprob),
        _column(r.nll),
        _column(r.perplexity),
        _column(r.confidence),
        _column(r.min_token_logprob),
        _column(r.min_token_index),
        _column(r.flagged),
        r.reasons,
        strict=True,
    )
    rows = []
    for seq, (n, mean, nll, ppl, conf, low, low_at, flagged, reasons) in zip(
        req.sequences, columns, strict=True
    ):
        row: dict[str, Any] = {} if seq.id is None else {"id": seq.id}
        row |= {
            "n_tokens": n,
            "mean_logprob": mean,
            "nll": nll,
            "perplexity": ppl,
            "confidence": conf,
            "min_token_logprob": low,
            "min_token_index": low_at,
            "flagged": flagged,
            "reasons": reasons,
        }
        rows.append(row)
    return {
        "sequences": rows,
        "nll": r.batch_nll,
        "perplexity": r.batch_perplexity,
        "warnings": r.warnings,
        "recorded": recorded,
    }


@router.post(
    "/sequences/score",
    response_model=None,
    responses={200: {"model": SequencesResponse}, **ERRORS},
    openapi_extra=request_body(SequencesRequest),
    summary="Perplexity and confidence of generated sequences",
)
async def score_sequences_route(request: Request) -> Response:
    """Per sequence: `n_tokens`, `mean_logprob`, `nll`, `perplexity`, `confidence` (the
    geometric-mean token probability), the least likely token, and flags; for the batch the
    token-weighted `nll` and `perplexity`. A sequence is `token_logprobs` or an OpenAI
    `logprobs` object as it comes; OpenAI's -9999 ("not in the top 20") is treated as censored
    and reported in `warnings`, never used as a probability."""
    body = await read_body(request)
    settings: Settings = request.app.state.settings
    metrics: Metrics = request.app.state.metrics
    length = header_length(request)

    def scored() -> tuple[Parsed[SequencesRequest], SequenceResult]:
        parsed = parse_sequences(body, header_length=length, settings=settings)
        return parsed, _score(parsed, settings)

    parsed, result = await compute(scored, len(body), settings)
    req = parsed.request
    recorded = None
    if req.stream is not None:  # a database write: never on the event loop
        stream = req.stream
        ids = [seq.id for seq in req.sequences]
        recorded = await in_thread(
            lambda: record_sequences(
                request.app.state.store,
                stream=stream,
                result=result,
                ids=None if all(i is None for i in ids) else ids,
                idempotency_key=request.headers.get("Idempotency-Key"),
                metrics=metrics.streams,
            )
        )
    metrics.items.labels("sequences", "sequences").inc(len(req.sequences))
    return json_response(
        await compute(lambda: dumps(_view(req, result, recorded)), len(body), settings)
    )
