"""What a route may ask FastAPI for: the store (engine or session), the settings, the principal.

    @router.get("/things/{thing_id}")
    def get_thing(thing_id: int, session: SessionDep, principal: ReaderDep) -> ThingPublic: ...

`SessionDep` is one session per request: the request owns the transaction. It commits after the
route returns and before the answer is sent (so a failed commit is the answer, a 503), and rolls
back when the route raises. Work that waits on something slow (a Prefect run, an LLM) takes
`EngineDep` instead and opens short sessions of its own, so it holds no connection meanwhile.
`IngesterDep`, `ReaderDep` and `ReviewerDep` are the principal of a token holding that scope
(401 without a valid token, 403 without the scope); `PrincipalDep` takes any valid token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session

from immunity.api.auth import Principal, authenticate, requires
from immunity.models.settings import Settings

__all__ = [
    "EngineDep",
    "IngesterDep",
    "PrincipalDep",
    "ReaderDep",
    "ReviewerDep",
    "SessionDep",
    "SettingsDep",
    "get_session",
]


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """Yield the request's session over the app's store; commit on return, roll back on error."""
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


EngineDep = Annotated[Engine, Depends(_engine)]
SettingsDep = Annotated[Settings, Depends(_settings)]
# scope="function": the commit runs before the answer is sent, so its failure is the answer.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
# The request's principal: any valid token (401 otherwise), or one holding a scope (403 otherwise).
PrincipalDep = Annotated[Principal, Depends(authenticate)]
IngesterDep = Annotated[Principal, Depends(requires("ingest"))]
ReaderDep = Annotated[Principal, Depends(requires("read"))]
ReviewerDep = Annotated[Principal, Depends(requires("review"))]
