"""Shared fixtures: a real PostgreSQL database per session, SQLite per test, one Prefect harness."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, text
from sqlmodel import SQLModel

from immunity.models.db import create_schema, get_engine
from immunity.models.settings import Settings, get_settings
from tests.prefect_shared import RUN_DIR_VARIABLE, shared_server_url, stop_shared_server

# What only steers the test run itself; every other IMMUNITY_* or PREFECT_* of the developer's
# shell is dropped, and no dotenv file is read, so a `.env` at the repository root (or a real
# Prefect profile in the home directory) never reaches a test or the processes tests start.
_TEST_CONTROLS = {
    "IMMUNITY_REQUIRE_POSTGRES",
    "IMMUNITY_REQUIRE_CHROMIUM",
    "IMMUNITY_TEST_POSTGRES_URL",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",  # set by immunity.cli, loaded before
    "IMMUNITY_TEST_RUN_DIR",  # the run's shared directory (tests/prefect_shared.py)
}


IS_WORKER = "PYTEST_XDIST_WORKER" in os.environ


def _hermetic_environment() -> None:
    # Once per process: a helper importing `tests.conftest` again must not start a new run.
    if os.environ.get("IMMUNITY_TEST_PROCESS") == str(os.getpid()):
        return
    for key in list(os.environ):
        if key.startswith(("IMMUNITY_", "PREFECT_")) and key not in _TEST_CONTROLS:
            del os.environ[key]
    os.environ["IMMUNITY_ENV_FILE"] = ""
    os.environ["IMMUNITY_TEST_PROCESS"] = str(os.getpid())
    # A terminal's width (or xdist's COLUMNS=80 in its workers) would fix the width of the CLI's
    # consoles when they are created; tests that care set COLUMNS when they invoke a command.
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)
    home = tempfile.mkdtemp(prefix="immunity-tests-prefect-home-")
    atexit.register(shutil.rmtree, home, True)
    os.environ["PREFECT_HOME"] = home
    # Settings built without a data directory (the demo's store, the replay key) write there,
    # never into the working copy's `.immunity/`.
    os.environ["IMMUNITY_DATA_DIR"] = os.path.join(home, "immunity-data")
    os.environ["PREFECT_PROFILES_PATH"] = os.path.join(home, "profiles.toml")
    # Before Prefect is imported anywhere: its telemetry fails noisily on a closed network.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not IS_WORKER:  # one directory for the whole run; xdist's workers inherit it
        run_dir = tempfile.mkdtemp(prefix="immunity-test-run-")
        atexit.register(shutil.rmtree, run_dir, True)
        os.environ[RUN_DIR_VARIABLE] = run_dir


_hermetic_environment()  # before anything imports Prefect

# Property tests: a quick default, and a thorough profile CI may also run
# (`HYPOTHESIS_PROFILE=thorough`). Tests that pay for each example (HTTP servers) set their own.
hypothesis_settings.register_profile("default", max_examples=100, deadline=None, database=None)
hypothesis_settings.register_profile("thorough", max_examples=2000, deadline=None, database=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REQUIRE_POSTGRES = os.environ.get("IMMUNITY_REQUIRE_POSTGRES") == "1"
REQUIRE_CHROMIUM = os.environ.get("IMMUNITY_REQUIRE_CHROMIUM") == "1"
POSTGRES_ADMIN_URL = os.environ.get(
    "IMMUNITY_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"
)


def _admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        reason = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {error}".strip()
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason} (IMMUNITY_REQUIRE_POSTGRES=1 makes this required)")
        pytest.skip(f"{reason} (set IMMUNITY_REQUIRE_POSTGRES=1 to make it required)")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session, dropped afterwards."""
    name = f"immunity_test_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    for engine_url in list(_created_engines):
        _created_engines.pop(engine_url).dispose()
    with _admin_connection() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_created_engines: dict[str, Engine] = {}
_schema_ready: set[str] = set()


@pytest.fixture
def clean_postgres_url(postgres_url: str) -> str:
    """The session's PostgreSQL database with the schema in place and every table empty."""
    engine = get_engine(postgres_url)
    _created_engines[postgres_url] = engine
    if postgres_url not in _schema_ready:
        create_schema(engine)
        _schema_ready.add(postgres_url)
    with engine.begin() as conn:
        tables = ", ".join(table.name for table in SQLModel.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return postgres_url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty store on each backend: a new SQLite file, or the session's PostgreSQL truncated."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'immunity.db'}"
        create_schema(get_engine(url))
        return url
    return request.getfixturevalue("clean_postgres_url")


@pytest.fixture
def engine(db_url: str) -> Engine:
    return get_engine(db_url)


@pytest.fixture(autouse=True)
def _isolated_settings() -> Iterator[None]:
    """Each test starts from the session's environment and reads settings anew.

    What a test changes in `os.environ` (the in-process demo sets its environments, for one) and
    the settings `get_settings()` cached are undone afterwards, so no test steers another.
    """
    saved = dict(os.environ)
    get_settings.cache_clear()
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)
    get_settings.cache_clear()


@pytest.fixture
def store(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the configured store (what flows and tasks use) at the test database."""
    monkeypatch.setenv("IMMUNITY_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def chromium() -> Settings:
    """Settings whose Chromium and chromedriver exist; skips (or fails, when required) if not."""
    from immunity.tasks.shared.browser import chromium_missing

    settings = Settings()
    reason = chromium_missing(settings)
    if reason is not None:
        if REQUIRE_CHROMIUM:
            pytest.fail(f"{reason} (IMMUNITY_REQUIRE_CHROMIUM=1 makes this required)")
        pytest.skip(f"{reason} (set IMMUNITY_REQUIRE_CHROMIUM=1 to make it required)")
    return settings


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """The run's one Prefect server (shared by xdist's workers): flows run against it."""
    from prefect.context import _temporary_global_settings_context, get_settings_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = shared_server_url(Path(os.environ[RUN_DIR_VARIABLE]), POSTGRES_ADMIN_URL)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        # Also the process-wide context, for code whose context was copied before this one.
        with _temporary_global_settings_context(get_settings_context()):
            yield


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The process that is not a worker stops the run's Prefect server, once every test ran."""
    if not IS_WORKER:
        stop_shared_server(Path(os.environ[RUN_DIR_VARIABLE]), POSTGRES_ADMIN_URL)


# Fixtures that make a test slow, and the markers they imply (see pyproject's marker list).
_SLOW_FIXTURES = {
    "prefect_harness": "prefect",
    "prefect_server": "prefect",
    "any_prefect_server": "prefect",
    "chromium": "browser",
    "postgres_url": "postgres",
    "clean_postgres_url": "postgres",
}


# Modules whose tests start services, subprocesses or benchmarks (paths from the repository).
_SLOW_MODULES = (
    "tests/api/test_store_outage.py",
    "tests/bench/",
    "tests/cli/test_pytest_plugin.py",
    "tests/deployments/",
    "tests/examples/",
    "tests/tasks/shared/test_target.py",
    "tests/test_install.py",
)
_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by what it starts, so `-m "not slow"` selects the quick part."""
    for item in items:
        if item.path.relative_to(_ROOT).as_posix().startswith(_SLOW_MODULES):
            item.add_marker("slow")
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("db_url") == "postgres":
            names.add("postgres_url")
        markers = {_SLOW_FIXTURES[name] for name in names & _SLOW_FIXTURES.keys()}
        if markers or item.get_closest_marker("slow"):
            markers.add("slow")
        for marker in sorted(markers):
            item.add_marker(marker)
