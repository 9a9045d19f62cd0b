"""The arena: votes on a fan-out's answers, and the leaderboard they make.

``POST /v1/fanouts/{id}/votes`` stores one vote per voter and fan-out (a repeat replaces the
earlier one): the best column, ``tie``, ``both_bad``, and optionally a full ranking. A vote
may come while answers still stream; it records which columns were still running. A column
that is not part of the fan-out is a ``422`` naming it.

``GET /v1/leaderboard`` fits a Bradley-Terry model to the stored votes (``by`` agent, agent
and model, or label; filtered by session, preset, voter and time) with 95 % bootstrap
intervals. Votes live in the SQL database of sessions (``ApiSettings.database_url``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Body, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import HTTPConnection

from orchestrator import (
    HubFanOut,
    Vote,
    VoteColumn,
    VoteError,
    VoteFilter,
    VoteStore,
    build_leaderboard,
    open_vote_store,
)

from . import _blind
from ._errors import ApiError, error_responses
from ._models import Name
from ._state import ApiState, State, find

router = APIRouter(prefix="/v1", tags=["arena"], responses=error_responses(401))
router.include_router(_blind.router)

#: Bootstrap rounds of a leaderboard unless the request asks for others.
DEFAULT_ROUNDS = 200


class VoteRequest(BaseModel):
    """Body of ``POST /v1/fanouts/{id}/votes``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"winner": "agent-1", "voter": "ann"},
                {"winner": "tie"},
                {"winner": "agent-2", "ranking": ["agent-2", "agent-1", "agent-3"]},
            ]
        },
    )

    winner: Annotated[Name, Field(min_length=1, max_length=200)] = Field(
        description="The best column's id (the events' `agent_id`), `tie` or `both_bad`."
    )
    ranking: list[Annotated[Name, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=1000, description="Column ids, best first (optional)."
    )
    voter: Annotated[Name, Field(min_length=1, max_length=200)] = Field(
        default="anonymous", description="Who votes: one vote per voter and fan-out."
    )
    comment: Annotated[Name, Field(max_length=10_000)] | None = None
    preset: Annotated[Name, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="The panel preset the fan-out came from (a filter)."
    )


class ColumnView(BaseModel):
    """A column the vote judged: its id, the Letta agent, label and model."""

    column_id: str
    agent_id: str
    label: str
    model: str | None


class VoteView(BaseModel):
    """A stored vote."""

    fanout_id: str
    voter: str
    winner: str
    ranking: list[str]
    running: list[str] = Field(description="Columns that were still answering.")
    comment: str | None
    session_id: str | None
    preset: str | None
    created_at: float
    columns: list[ColumnView]
    revealed: dict[str, ColumnView] | None = Field(
        default=None,
        description="For a fan-out watched blind: which column each opaque id was.",
    )


class LeaderboardRowView(BaseModel):
    """One competitor: Elo-scale rating with its 95 % interval, and its record."""

    agent_id: str
    label: str
    model: str | None
    rating: float
    ci_low: float
    ci_high: float
    votes: int
    wins: float
    losses: float
    ties: float


class LeaderboardView(BaseModel):
    """Answer of ``GET /v1/leaderboard``: rows sorted by rating, best first."""

    rows: list[LeaderboardRowView]
    method: str
    n_votes: int
    by: Literal["agent", "agent_model", "label"]


class _Votes:
    """The app's vote store, opened on first use (an app nobody votes on never touches the
    database) and closed with the app."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.store: VoteStore | None = None
        self.closed = False
        self._lock = anyio.Lock()
        self._stack = AsyncExitStack()

    async def get(self) -> VoteStore:
        async with self._lock:
            if self.closed:
                raise ApiError(503, "not_ready", "the server is starting or shutting down")
            if self.store is None:
                self.store = await self._stack.enter_async_context(open_vote_store(self.url))
            return self.store

    async def aclose(self) -> None:
        async with self._lock:
            self.closed = True
            self.store = None
            await self._stack.aclose()


@asynccontextmanager
async def serve_votes(app: FastAPI, state: ApiState) -> AsyncIterator[None]:
    """Give the app a vote store (the sessions' database) for its lifespan."""
    votes = _Votes(state.settings.database_url)
    app.state.votes = votes
    try:
        yield
    finally:
        app.state.votes = None
        with anyio.CancelScope(shield=True):
            await votes.aclose()


async def get_votes(conn: HTTPConnection) -> VoteStore:
    """The app's vote store; ``503`` outside the lifespan."""
    votes: _Votes | None = getattr(conn.app.state, "votes", None)
    if votes is None:
        raise ApiError(503, "not_ready", "the server is starting or shutting down")
    return await votes.get()


def fanout_columns(entry: HubFanOut) -> tuple[tuple[VoteColumn, ...], tuple[str, ...]]:
    """The fan-out's columns (Letta agent and model from ``fanout_start``) and those of
    them still running."""
    info: dict[str, Any] = {}
    first = entry.log.snapshot()[:1]
    if first and first[0].type == "fanout_start":
        info = {a["agent_id"]: a for a in first[0].data.get("agents", ())}
    columns = tuple(
        VoteColumn(
            column_id,
            str(info.get(column_id, {}).get("letta_agent_id") or column_id),
            label,
            info.get(column_id, {}).get("model"),
        )
        for column_id, label in entry.agents.items()
    )
    agents = entry.summary()["agents"]
    running = tuple(
        c for c, s in agents.items() if entry.running and s.get("state") in ("pending", "streaming")
    )
    return columns, running


def vote_view(vote: Vote) -> dict[str, Any]:
    return {
        "fanout_id": vote.fanout_id,
        "voter": vote.voter,
        "winner": vote.winner,
        "ranking": list(vote.ranking),
        "running": list(vote.running),
        "comment": vote.comment,
        "session_id": vote.session_id,
        "preset": vote.preset,
        "created_at": vote.created_at,
        "columns": [c.to_dict() for c in vote.columns],
    }


def _check_blind(hidden: _blind.BlindMap, body: VoteRequest) -> None:
    # A fan-out watched blind: a foreign column is named among the opaque ids only, so the
    # error does not reveal the real ones.
    known = set(hidden.to_real) | set(hidden.to_blind) | {"tie", "both_bad"}
    for where, column in [("winner", body.winner), *(("ranking", c) for c in body.ranking or ())]:
        if column not in known:
            raise ApiError(
                422,
                "invalid_vote",
                f"{where}: {column!r} is not a column of fan-out {hidden.fanout_id} "
                f"(columns: {', '.join(hidden.to_real)})",
                details=[{"loc": ["body", where], "column": column}],
            )


@router.post(
    "/fanouts/{fanout_id}/votes",
    status_code=201,
    response_model=VoteView,
    responses=error_responses(404, 410, 422, 503),
    summary="Vote on a fan-out's answers",
)
async def cast_vote(
    fanout_id: str, conn: HTTPConnection, state: State, body: Annotated[VoteRequest, Body()]
) -> dict[str, Any]:
    """Store the voter's verdict on this fan-out, replacing an earlier one.

    `winner` is a column id (the events' `agent_id`), `tie` or `both_bad`; `ranking` orders
    column ids best first. May be sent while answers still stream (`running` lists those
    columns). `422` names a column that is not part of the fan-out; `404` unknown fan-out.
    """
    entry = await find(state, fanout_id)
    store = await get_votes(conn)
    columns, running = fanout_columns(entry)
    hidden = await _blind.blind_maps(conn).get(fanout_id, state.require_hub())
    real = hidden.to_real if hidden is not None else {}
    if hidden is not None:
        _check_blind(hidden, body)
    vote = Vote(
        fanout_id=fanout_id,
        winner=real.get(body.winner, body.winner),
        columns=columns,
        ranking=tuple(real.get(c, c) for c in body.ranking or ()),
        voter=body.voter,
        comment=body.comment,
        running=running,
        preset=body.preset,
    )
    try:
        stored = await store.cast(vote)
    except VoteError as exc:
        raise ApiError(
            422,
            "invalid_vote",
            str(exc),
            details=[{"loc": ["body", exc.field], "column": exc.column}],
        ) from None
    view = vote_view(stored)
    if hidden is not None:
        by_id = {c.column_id: c.to_dict() for c in stored.columns}
        view["revealed"] = {hidden.to_blind[c]: by_id[c] for c in hidden.order if c in by_id}
    return view


@router.get(
    "/leaderboard",
    response_model=LeaderboardView,
    responses=error_responses(422, 503),
    summary="The leaderboard of stored votes",
)
async def get_leaderboard(
    conn: HTTPConnection,
    by: Annotated[Literal["agent", "agent_model", "label"], Query()] = "agent",
    session_id: Annotated[Name | None, Query(max_length=200)] = None,
    preset: Annotated[Name | None, Query(max_length=200)] = None,
    voter: Annotated[Name | None, Query(max_length=200)] = None,
    since: Annotated[float | None, Query(description="Unix seconds, inclusive.")] = None,
    until: Annotated[float | None, Query(description="Unix seconds, exclusive.")] = None,
    rounds: Annotated[int, Query(ge=0, le=2000)] = DEFAULT_ROUNDS,
    seed: Annotated[int, Query(ge=0, le=2**32 - 1)] = 0,
) -> dict[str, Any]:
    """Bradley-Terry ratings (Elo scale) with 95 % intervals from a seeded bootstrap.

    A winner among N counts as a win over each other column, a ranking as all its pairs, a
    tie as half a win each way. `by`: `agent`, `agent_model` (one agent on several models)
    or `label`.
    """
    for name, value in (("since", since), ("until", until)):
        if value is not None and value != value:  # NaN
            raise ApiError(422, "invalid_request", f"{name}: must be a number")
    store = await get_votes(conn)
    votes = await store.votes(VoteFilter(session_id, preset, voter, since, until))
    try:
        board = await anyio.to_thread.run_sync(
            lambda: build_leaderboard(votes, by=by, rounds=rounds, seed=seed)
        )
    except ImportError as exc:
        raise ApiError(
            503,
            "arena_unavailable",
            f"the leaderboard needs the 'arena' extra (numpy, scipy): {exc}",
        ) from None
    return board.to_dict()
