"""`POST /events`: shop events onto the event stream (docs/streaming.md).

Each event is checked against the contract's row rules (the ingest's code, through
streaming.intake); the ones that pass are appended to the stream in one round trip, and the answer
is 202 with the counts and, for each rejected event, its position, rule and column (never the
value). References, duplicates and bot sessions are judged by the stream worker, which quarantines
what fails them.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from serving.deps import ResourcesDep
from serving.errors import InvalidRequest, StreamUnavailable
from serving.schemas import EventRejection, EventsRequest, EventsResponse
from streaming.intake import check_rows

router = APIRouter(tags=["events"])


@router.post("/events", status_code=202, response_model=EventsResponse)
async def post_events(body: EventsRequest, res: ResourcesDep):
    """Check each event's row rules and append the valid ones to the stream."""
    settings = res.settings
    if len(body.events) > settings.max_events_per_request:
        raise InvalidRequest(f"at most {settings.max_events_per_request} events per request")
    accepted, rejected = await run_in_threadpool(
        check_rows, body.events, None, settings.value_bounds
    )
    if accepted:
        if res.producer is None:
            raise StreamUnavailable("no event stream is configured")
        try:
            await res.producer.send(accepted)
        except Exception as exc:  # noqa: BLE001 - Redis down, timed out, refusing: all a 503
            raise StreamUnavailable(
                f"the event stream did not take the events ({type(exc).__name__})"
            ) from exc
    return EventsResponse(
        accepted=len(accepted),
        rejected=len(rejected),
        rejections=[EventRejection(index=r.index, rule=r.rule, column=r.column) for r in rejected],
    )
