"""`import immunity`: cheap to import, an `__all__` that resolves, in-process ingest that stores."""

from __future__ import annotations

import inspect
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import immunity
from immunity.models.db import create_schema, get_engine
from immunity.models.settings import Environment
from tests.tasks.ingest.test_pipeline import recipe_failure

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves_and_says_what_it_is() -> None:
    assert immunity.__all__ == sorted(immunity.__all__)
    for name in immunity.__all__:
        value = getattr(immunity, name)
        assert inspect.getdoc(value), f"immunity.{name} has no docstring"
    assert set(immunity.__all__) <= set(dir(immunity))
    with pytest.raises(AttributeError, match="no_such_name"):
        immunity.no_such_name  # noqa: B018


def test_the_errors_are_one_tree() -> None:
    for name in ("NotFoundError", "InvalidInputError", "ConflictError", "ApiClientError"):
        assert issubclass(getattr(immunity, name), immunity.ImmunityError)
    assert issubclass(immunity.ApiResponseError, immunity.ApiClientError)


def test_importing_immunity_loads_neither_prefect_nor_the_store() -> None:
    code = (
        "import immunity, sys; "
        "print(sorted(m for m in ('prefect', 'sqlalchemy', 'fastapi') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[immunity.Settings]:
    """Settings of a new SQLite store whose production is a port held closed (nothing answers)."""
    url = f"sqlite:///{tmp_path / 'immunity.db'}"
    create_schema(get_engine(url))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        production = Environment(base_url=f"http://127.0.0.1:{closed.getsockname()[1]}")
        yield immunity.Settings(
            _env_file=None, database_url=url, environments={"production": production}
        )


def test_in_process_ingest_stores_a_signature_and_builds_its_test(
    settings: immunity.Settings,
) -> None:
    report = immunity.ingest_failures(
        [recipe_failure(1), recipe_failure(2), {"message": "no type"}], settings=settings
    )
    assert (report.accepted, report.new_signatures, report.tests_created) == (2, 1, 0)
    [rejected] = report.rejected
    assert rejected.index == 2 and rejected.errors[0].startswith("error_type")
    [signature] = immunity.list_signatures(settings=settings)
    assert signature.occurrence_count == 2 and signature.test_id is None

    third = immunity.ingest_failures([recipe_failure(3)], settings=settings)
    [generated] = third.generated
    assert generated.created and generated.signature_id == signature.id
    [test] = immunity.list_tests(status="active", settings=settings)
    assert test.id == generated.test_id
    # The replay against production found nobody there: the test is not trusted yet.
    assert test.reproduction == "unverified"
    assert immunity.list_signatures(status="tested", settings=settings)[0].id == signature.id

    successes = immunity.ingest_successes([{"operation": "GET /api/recipes"}], settings=settings)
    assert successes.accepted == 1
    with pytest.raises(immunity.InvalidInputError, match="status 'broken'"):
        immunity.list_tests(status="broken", settings=settings)


def test_deciding_an_unknown_fix_is_not_found(settings: immunity.Settings) -> None:
    with pytest.raises(immunity.NotFoundError, match="fix proposal 999"):
        immunity.decide_fix(999, approved=True, reviewer="ann", settings=settings)
    with pytest.raises(immunity.InvalidInputError, match="reviewer"):
        immunity.decide_fix(999, approved=True, reviewer="", settings=settings)
