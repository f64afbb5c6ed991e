"""``POST /v1/sequences/score``: perplexity, confidence and flags of generated sequences."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.pipeline import run, sequences_route
from service.openapi import ERRORS, request_body
from service.schemas import SequencesRequest, SequencesResponse

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["sequences"])


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
    return await run(request, sequences_route(request))
