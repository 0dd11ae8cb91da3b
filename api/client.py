"""`immunity.Client` and `AsyncClient`: immunity's HTTP API for code that does not share its store.

Every answer is a pydantic model (`immunity.api.public`); every error answer is raised as one
exception family, so a caller catches at the level it cares about:

    ImmunityError
    └── ApiClientError              anything a client raises on purpose
        ├── ApiUnreachableError     no answer at all: refused, timed out (also UnavailableError)
        └── ApiResponseError        an error answer; `.status`, `.detail` and the parsed `.body`
            ├── ApiInvalidInputError    400, 413, 415, 422 (also InvalidInputError)
            ├── ApiRefusedError         403: not for this token (it lacks the scope the request
            │                           needs) or not at all (also RefusedError)
            │   └── ApiAuthError        401: no token, or a wrong one
            ├── ApiNotFoundError        404 (also NotFoundError)
            ├── ApiConflictError        409 (also ConflictError)
            └── ApiUnavailableError     502, 503, 504: retry later (also UnavailableError)

Only httpx and pydantic are loaded: neither the store nor Prefect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from immunity.api.public import (
    DecisionAnswer,
    FixDetail,
    FixPublic,
    HealthAnswer,
    IngestAnswer,
    SignaturePublic,
    TestPublic,
)
from immunity.models.errors import (
    ConflictError,
    ImmunityError,
    InvalidInputError,
    NotFoundError,
    RefusedError,
    UnavailableError,
)

__all__ = [
    "ApiAuthError",
    "ApiClientError",
    "ApiConflictError",
    "ApiInvalidInputError",
    "ApiNotFoundError",
    "ApiRefusedError",
    "ApiResponseError",
    "ApiUnavailableError",
    "ApiUnreachableError",
    "AsyncClient",
    "Client",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class ApiClientError(ImmunityError):
    """Anything `Client` or `AsyncClient` raises on purpose."""


class ApiUnreachableError(ApiClientError, UnavailableError):
    """The API gave no answer: the connection was refused, broke or timed out."""


class ApiResponseError(ApiClientError):
    """The API answered with an error: `status`, its message as `detail`, and the parsed `body`."""

    def __init__(self, status: int, detail: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body


class ApiInvalidInputError(ApiResponseError, InvalidInputError):
    """The request could not be used as sent (400, 413, 415, 422); `detail` names what."""


class ApiRefusedError(ApiResponseError, RefusedError):
    """Immunity will not do this, whoever asks (403)."""


class ApiAuthError(ApiRefusedError):
    """The bearer token is missing or wrong (401)."""


class ApiNotFoundError(ApiResponseError, NotFoundError):
    """What the request names is not there (404)."""


class ApiConflictError(ApiResponseError, ConflictError):
    """The request contradicts the current state, e.g. a proposal already decided (409)."""


class ApiUnavailableError(ApiResponseError, UnavailableError):
    """The API or its store is away for now (502, 503, 504): nothing was stored, retry later."""


_ERRORS: dict[int, type[ApiResponseError]] = {
    400: ApiInvalidInputError,
    401: ApiAuthError,
    403: ApiRefusedError,
    404: ApiNotFoundError,
    409: ApiConflictError,
    413: ApiInvalidInputError,
    415: ApiInvalidInputError,
    422: ApiInvalidInputError,
    502: ApiUnavailableError,
    503: ApiUnavailableError,
    504: ApiUnavailableError,
}


def _error(response: httpx.Response) -> ApiResponseError:
    """Return the exception for an error answer, with the API's own message as its detail."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        detail = body["error"]
    elif isinstance(body, dict) and body.get("rejected"):  # an ingest batch with nothing valid
        detail = "; ".join(
            f"event {item.get('index')}: {'; '.join(item.get('errors', []))}"
            for item in body["rejected"]
        )
    else:
        detail = response.text[:500] or response.reason_phrase
    kind = _ERRORS.get(response.status_code, ApiResponseError)
    return kind(response.status_code, detail, body)


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One request to the API and how to read its answer; the clients only send it."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _checked(response: httpx.Response) -> Any:
    if response.is_error:
        raise _error(response)
    return response.json()


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate(_checked(response))


def _items(model: type[BaseModel], key: str) -> Callable[[httpx.Response], Any]:
    return lambda response: [model.model_validate(item) for item in _checked(response)[key]]


def _health(response: httpx.Response) -> HealthAnswer:
    if response.status_code == 503:  # an answer about health, not a failed request
        return HealthAnswer.model_validate(response.json())
    return HealthAnswer.model_validate(_checked(response))


def _events(events: Iterable[Mapping[str, Any] | BaseModel]) -> list[Any]:
    return [e.model_dump(mode="json") if isinstance(e, BaseModel) else dict(e) for e in events]


def _query(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


class _Calls:
    """The API's endpoints as calls (no I/O): what both clients send, and how they read it."""

    @staticmethod
    def send_failures(events: Any, idempotency_key: str | None) -> _Call[IngestAnswer]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"events": _events(events)}
        return _Call("POST", "/api/v1/failures", _model(IngestAnswer), json=body, headers=headers)

    @staticmethod
    def send_successes(events: Any) -> _Call[IngestAnswer]:
        body = {"events": _events(events)}
        return _Call("POST", "/api/v1/successes", _model(IngestAnswer), json=body)

    @staticmethod
    def signatures(status: str | None, limit: int, offset: int) -> _Call[list[SignaturePublic]]:
        params = _query(status=status, limit=limit, offset=offset)
        read = _items(SignaturePublic, "signatures")
        return _Call("GET", "/api/v1/signatures", read, params=params)

    @staticmethod
    def tests(status: str | None, limit: int, offset: int) -> _Call[list[TestPublic]]:
        params = _query(status=status, limit=limit, offset=offset)
        return _Call("GET", "/api/v1/tests", _items(TestPublic, "tests"), params=params)

    @staticmethod
    def fixes(status: str | None, limit: int) -> _Call[list[FixPublic]]:
        params = _query(status=status, limit=limit)
        return _Call("GET", "/api/v1/fixes", _items(FixPublic, "fixes"), params=params)

    @staticmethod
    def fix(proposal_id: int) -> _Call[FixDetail]:
        return _Call("GET", f"/api/v1/fixes/{int(proposal_id)}", _model(FixDetail))

    @staticmethod
    def decide_fix(
        proposal_id: int, approved: bool, reviewer: str | None, notes: str
    ) -> _Call[DecisionAnswer]:
        body: dict[str, Any] = {"approved": approved, "notes": notes}
        if reviewer is not None:
            body["reviewer"] = reviewer
        path = f"/api/v1/fixes/{int(proposal_id)}/decision"
        return _Call("POST", path, _model(DecisionAnswer), json=body)

    @staticmethod
    def health() -> _Call[HealthAnswer]:
        return _Call("GET", "/api/v1/health", _health)


class _Base:
    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    def _request(self, call: _Call[Any]) -> dict[str, Any]:
        return {
            "method": call.method,
            "url": self.base_url + call.path,
            "params": call.params,
            "json": call.json,
            "headers": {**self._auth, **call.headers},
        }


def _unreachable(base_url: str, error: httpx.TransportError) -> ApiUnreachableError:
    return ApiUnreachableError(f"no answer from {base_url}: {type(error).__name__}: {error}")


def _read(call: _Call[T], response: httpx.Response) -> T:
    """Return the call's answer; an answer that is not what the API sends is an error too."""
    try:
        return call.read(response)
    except ApiClientError:
        raise
    except (ValueError, KeyError, TypeError) as error:  # not JSON, or not the API's shape
        detail = f"unexpected answer from {response.url}: {str(error)[:300]}"
        raise ApiResponseError(response.status_code, detail) from error


class Client(_Base):
    """A client of immunity's HTTP API: `Client("https://immunity.example.com", token)`.

    Pass `http` to reuse your own `httpx.Client` (it stays yours to close), or `transport` to
    route requests (e.g. `httpx.MockTransport` in tests). Use it as a context manager, or call
    `close()`.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, token)
        self._owned = http is None
        self._http = http or httpx.Client(timeout=timeout, transport=transport)

    def _run(self, call: _Call[T]) -> T:
        try:
            response = self._http.request(**self._request(call))
        except httpx.TransportError as error:
            raise _unreachable(self.base_url, error) from error
        return _read(call, response)

    def send_failures(
        self, events: Iterable[Mapping[str, Any] | BaseModel], idempotency_key: str | None = None
    ) -> IngestAnswer:
        """Return what the API stored of a batch of failure events (bad ones rejected by index).

        `idempotency_key` goes out as the `Idempotency-Key` header, for a server or proxy that
        deduplicates retried batches by it.
        """
        return self._run(_Calls.send_failures(events, idempotency_key))

    def send_successes(self, events: Iterable[Mapping[str, Any] | BaseModel]) -> IngestAnswer:
        """Return what the API stored of a batch of success events."""
        return self._run(_Calls.send_successes(events))

    def signatures(
        self, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[SignaturePublic]:
        """Return a page of signatures, most recently seen first (optionally of one status)."""
        return self._run(_Calls.signatures(status, limit, offset))

    def tests(
        self, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[TestPublic]:
        """Return a page of regression tests, newest first (active, quarantined or inactive)."""
        return self._run(_Calls.tests(status, limit, offset))

    def fixes(self, status: str | None = None, limit: int = 50) -> list[FixPublic]:
        """Return the newest fix proposals, optionally only those in one status."""
        return self._run(_Calls.fixes(status, limit))

    def fix(self, proposal_id: int) -> FixDetail:
        """Return one fix proposal with its status history."""
        return self._run(_Calls.fix(proposal_id))

    def decide_fix(
        self, proposal_id: int, approved: bool, reviewer: str | None = None, notes: str = ""
    ) -> DecisionAnswer:
        """Return the API's receipt of a decision on a proposal awaiting approval, recorded as
        the token's principal (it needs the `review` scope; `reviewer` is not used)."""
        return self._run(_Calls.decide_fix(proposal_id, approved, reviewer, notes))

    def health(self) -> HealthAnswer:
        """Return whether the API and its store are up (an answer, not an error, when down)."""
        return self._run(_Calls.health())

    def close(self) -> None:
        """Close the connections this client opened (never an `http` client passed in)."""
        if self._owned:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncClient(_Base):
    """`Client` for asyncio: the same methods, awaited; `async with AsyncClient(...) as c:`."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, token)
        self._owned = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout, transport=transport)

    async def _run(self, call: _Call[T]) -> T:
        try:
            response = await self._http.request(**self._request(call))
        except httpx.TransportError as error:
            raise _unreachable(self.base_url, error) from error
        return _read(call, response)

    async def send_failures(
        self, events: Iterable[Mapping[str, Any] | BaseModel], idempotency_key: str | None = None
    ) -> IngestAnswer:
        """Return what the API stored of a batch of failure events (see `Client.send_failures`)."""
        return await self._run(_Calls.send_failures(events, idempotency_key))

    async def send_successes(self, events: Iterable[Mapping[str, Any] | BaseModel]) -> IngestAnswer:
        """Return what the API stored of a batch of success events."""
        return await self._run(_Calls.send_successes(events))

    async def signatures(
        self, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[SignaturePublic]:
        """Return a page of signatures, most recently seen first (optionally of one status)."""
        return await self._run(_Calls.signatures(status, limit, offset))

    async def tests(
        self, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[TestPublic]:
        """Return a page of regression tests, newest first (active, quarantined or inactive)."""
        return await self._run(_Calls.tests(status, limit, offset))

    async def fixes(self, status: str | None = None, limit: int = 50) -> list[FixPublic]:
        """Return the newest fix proposals, optionally only those in one status."""
        return await self._run(_Calls.fixes(status, limit))

    async def fix(self, proposal_id: int) -> FixDetail:
        """Return one fix proposal with its status history."""
        return await self._run(_Calls.fix(proposal_id))

    async def decide_fix(
        self, proposal_id: int, approved: bool, reviewer: str | None = None, notes: str = ""
    ) -> DecisionAnswer:
        """Return the API's receipt of a decision on a proposal awaiting approval, recorded as
        the token's principal (it needs the `review` scope; `reviewer` is not used)."""
        return await self._run(_Calls.decide_fix(proposal_id, approved, reviewer, notes))

    async def health(self) -> HealthAnswer:
        """Return whether the API and its store are up (an answer, not an error, when down)."""
        return await self._run(_Calls.health())

    async def aclose(self) -> None:
        """Close the connections this client opened (never an `http` client passed in)."""
        if self._owned:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
