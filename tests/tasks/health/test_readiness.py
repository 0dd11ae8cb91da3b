"""The readiness score: bands, weights and redistribution by hand, then measured from stores."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine
from sqlmodel import Session, select

from immunity.examples.sample_service import start_server
from immunity.models.readiness import ReadinessBand, ReadinessPart
from immunity.models.schemas import utcnow
from immunity.models.settings import Settings
from immunity.models.tables import RegressionTest, TestExecution
from immunity.tasks.health.readiness import band, gate_failures, measure_readiness, readiness_score
from immunity.tasks.regress.selection import UnknownEnvironmentError
from tests.tasks.health.test_probes import probe_target
from tests.tasks.test_health_alerts import failure, ingest, success

SEED = {"workflow": 40, "ui": 30, "health": 20, "database": 5, "queue": 5}


def parts(**scores: float | None) -> list[ReadinessPart]:
    return [
        ReadinessPart(name=name, score=scores.get(name), detail=f"{name} detail") for name in SEED
    ]


# Bands ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (100, ReadinessBand.READY),
        (95, ReadinessBand.READY),
        (94.9, ReadinessBand.MOSTLY_READY),
        (94, ReadinessBand.MOSTLY_READY),
        (80, ReadinessBand.MOSTLY_READY),
        (79.9, ReadinessBand.NEEDS_WORK),
        (79, ReadinessBand.NEEDS_WORK),
        (60, ReadinessBand.NEEDS_WORK),
        (59.9, ReadinessBand.NOT_READY),
        (59, ReadinessBand.NOT_READY),
        (0, ReadinessBand.NOT_READY),
    ],
)
def test_band_edges(score: float, expected: ReadinessBand) -> None:
    assert band(score) == expected


# Weights and redistribution, reference cases worked by hand -------------------------------------


def test_every_part_measured_uses_the_seed_weights() -> None:
    # 0.4·95.5 + 0.3·88.6 + 0.2·93.75 + 0.05·100 + 0.05·100 = 38.2 + 26.58 + 18.75 + 10 = 93.53
    readiness = readiness_score(
        parts(workflow=95.5, ui=88.6, health=93.75, database=100, queue=100), SEED
    )
    assert readiness.score == 93.5 and readiness.band == ReadinessBand.MOSTLY_READY
    assert [(p.weight, p.effective_weight) for p in readiness.parts] == [
        (40, 40),
        (30, 30),
        (20, 20),
        (5, 5),
        (5, 5),
    ]
    assert readiness.notes == []


def test_a_missing_part_gives_its_weight_to_the_others_and_says_so() -> None:
    # UI and queue not measured: 40 + 20 + 5 = 65 carry everything.
    # (80·40 + 100·20 + 100·5) / 65 = 5700 / 65 = 87.69
    readiness = readiness_score(parts(workflow=80, health=100, database=100), SEED)
    assert readiness.score == 87.7 and readiness.band == ReadinessBand.MOSTLY_READY
    effective = {p.name: p.effective_weight for p in readiness.parts}
    assert effective == {
        "workflow": pytest.approx(61.5385),
        "ui": 0,
        "health": pytest.approx(30.7692),
        "database": pytest.approx(7.6923),
        "queue": 0,
    }
    assert sum(effective.values()) == pytest.approx(100, abs=1e-3)
    assert [p.weight for p in readiness.parts] == [40, 30, 20, 5, 5]
    assert readiness.notes == [
        "ui not measured (ui detail): its 30 % weight went to the others",
        "queue not measured (queue detail): its 5 % weight went to the others",
        "the measured parts carry 65 % of the configured weight",
    ]


def test_weights_are_configurable_and_relative() -> None:
    weights = {"workflow": 1, "ui": 1, "health": 0, "database": 0, "queue": 0}
    readiness = readiness_score(parts(workflow=50, ui=100, database=0), weights)
    # Half and half; the database's 0 weighs nothing, the missing zero-weight parts say nothing.
    assert readiness.score == 75 and readiness.band == ReadinessBand.NEEDS_WORK
    assert [p.weight for p in readiness.parts] == [50, 50, 0, 0, 0]
    assert readiness.notes == []
    # The same measurements under the seed's weights: (50·40 + 100·30 + 0·5) / 75 = 66.67
    assert readiness_score(parts(workflow=50, ui=100, database=0), SEED).score == 66.7


def test_nothing_measured_scores_zero_not_ready() -> None:
    readiness = readiness_score(parts(), SEED)
    assert readiness.score == 0 and readiness.band == ReadinessBand.NOT_READY
    assert readiness.notes[-1] == "nothing that carries weight could be measured: the score is 0"
    assert "ui not measured (ui detail)" in readiness.notes
    assert not any("went to the others" in note for note in readiness.notes)
    assert all(p.effective_weight == 0 for p in readiness.parts)


def test_unknown_and_invalid_weights() -> None:
    readiness = readiness_score(parts(workflow=100), {**SEED, "kafka": 10})
    assert readiness.notes[0] == "the weight of 'kafka' was ignored: there is no such part"
    assert readiness.score == 100
    with pytest.raises(ValueError, match="negative"):
        readiness_score(parts(workflow=100), {**SEED, "ui": -1})
    with pytest.raises(ValueError, match="no part any weight"):
        readiness_score(parts(workflow=100), dict.fromkeys(SEED, 0))


def test_gate_failures_name_the_score_and_the_critical_tests() -> None:
    readiness = readiness_score(
        parts(workflow=100, ui=100, health=100, database=100, queue=100),
        SEED,
        critical_failures=["checkout", "login"],
    )
    assert readiness.score == 100
    assert gate_failures(readiness, 0) == ["2 critical test(s) failed: checkout, login"]
    clean = readiness.model_copy(update={"critical_failures": []})
    assert gate_failures(clean, 100) == []
    assert gate_failures(clean, 101) == ["readiness 100 (ready) is below 101"]


# Measured from a real store (SQLite and PostgreSQL) ---------------------------------------------


def settings(**overrides: object) -> Settings:
    environments = {
        "staging": {"base_url": "http://127.0.0.1:9", "is_production": False},
        "production": {"base_url": "http://127.0.0.1:9", "is_production": True},
        "qa": {"base_url": "http://127.0.0.1:9", "is_production": False},
    }
    return Settings(environments=environments, **overrides)


def add_test(
    engine: Engine,
    name: str,
    *,
    kind: str = "http",
    type_: str = "integration",
    tags: Sequence[str] = (),
    runs: Sequence[tuple[str, str]] = (),
    quarantined: bool = False,
    active: bool = True,
) -> None:
    """A test and its runs, (status, environment), oldest first."""
    start = utcnow() - timedelta(hours=1)
    with Session(engine) as session:
        test = RegressionTest(
            name=name,
            kind=kind,
            type=type_,
            tags=list(tags),
            quarantined=quarantined,
            is_active=active,
        )
        session.add(test)
        session.flush()
        assert test.id is not None
        for n, (status, environment) in enumerate(runs):
            session.add(
                TestExecution(
                    test_id=test.id,
                    status=status,
                    environment=environment,
                    trigger="manual",
                    started_at=start + timedelta(minutes=n),
                )
            )
        session.commit()


def test_latest_runs_make_the_test_parts_and_critical_failures(engine: Engine) -> None:
    staging = "staging"
    # A skipped run is no result: the run before it stands.
    add_test(
        engine, "wf_pass", runs=[("failed", staging), ("passed", staging), ("skipped", staging)]
    )
    add_test(engine, "wf_flaky", kind="scenario", runs=[("flaky", staging)])
    add_test(
        engine, "wf_fail", runs=[("passed", staging), ("failed", staging), ("skipped", staging)]
    )
    add_test(engine, "wf_crit", type_="regression", runs=[("error", staging)])
    add_test(engine, "wf_quarantined", type_="smoke", runs=[("failed", staging)], quarantined=True)
    add_test(engine, "wf_inactive", type_="smoke", runs=[("failed", staging)], active=False)
    add_test(engine, "wf_never", runs=[("skipped", staging)])
    add_test(engine, "ui_pass", kind="ui", runs=[("passed", staging)])
    add_test(engine, "ui_fail", kind="ui", tags=["critical"], runs=[("failed", staging)])

    readiness = measure_readiness(engine, settings())
    by_name = {part.name: part for part in readiness.parts}
    assert by_name["workflow"].score == 50
    assert by_name["workflow"].detail == "2 of 4 workflow tests passed (1 flaky); 1 never ran"
    assert (by_name["ui"].score, by_name["ui"].detail) == (50, "1 of 2 UI tests passed")
    assert by_name["health"].score is None  # no probes, no traffic
    assert by_name["database"].score == 100
    assert by_name["queue"].score is None
    # (50·40 + 50·30 + 100·5) / 75 = 4000 / 75 = 53.33
    assert readiness.score == 53.3 and readiness.band == ReadinessBand.NOT_READY
    assert readiness.critical_failures == ["ui_fail", "wf_crit"]
    assert [p.kind for p in readiness.probes] == ["database"]

    # A deployed fix excuses its own test: out of the share and out of the critical failures.
    with Session(engine) as session:
        crit = session.exec(select(RegressionTest).where(RegressionTest.name == "wf_crit")).one()
    excused = measure_readiness(engine, settings(), exclude_test_ids=[crit.id])
    assert next(p.detail for p in excused.parts if p.name == "workflow").startswith("2 of 3")
    assert excused.critical_failures == ["ui_fail"]


def test_environment_judges_tests_by_their_latest_run_there(engine: Engine) -> None:
    add_test(engine, "checkout", runs=[("passed", "staging"), ("failed", "production")])
    config = settings()

    def workflow(environment: str | None) -> float | None:
        readiness = measure_readiness(engine, config, environment)
        assert readiness.environment == environment
        return next(p.score for p in readiness.parts if p.name == "workflow")

    assert workflow(None) == 0
    assert workflow("staging") == 100
    assert workflow("production") == 0
    assert workflow("qa") is None
    with pytest.raises(UnknownEnvironmentError):
        measure_readiness(engine, config, "nowhere")


def test_health_without_probes_is_the_failure_rate_over_the_window(engine: Engine) -> None:
    at = utcnow() - timedelta(minutes=5)
    ingest(engine, [failure(at)], [success(at)] * 3)
    few = measure_readiness(engine, settings())
    health = next(p for p in few.parts if p.name == "health")
    assert (
        health.score is None and "4 attempt(s)" in health.detail and "fewer than 5" in health.detail
    )
    ingest(engine, [], [success(at)] * 6)
    enough = measure_readiness(engine, settings())
    health = next(p for p in enough.parts if p.name == "health")
    assert health.score == pytest.approx(90) and "failure rate 10.0 % over 10 attempts" in (
        health.detail
    )


@pytest.fixture(scope="module")
def service_url() -> Iterator[str]:
    with start_server(probe_target()) as server:
        yield server.base_url


def test_probes_and_queue_with_every_part_measured(engine: Engine, service_url: str) -> None:
    add_test(engine, "flow", runs=[("passed", "staging")])
    add_test(engine, "page", kind="ui", runs=[("passed", "staging")])
    probes = [
        {"name": "api", "url": f"{service_url}/ok"},
        {"name": "billing", "url": f"{service_url}/down"},
    ]
    with socket.create_server(("127.0.0.1", 0)) as broker:
        address = f"127.0.0.1:{broker.getsockname()[1]}"
        with httpx.Client() as client:
            readiness = measure_readiness(
                engine,
                settings(health_probes=probes, queue_address=address),
                client=client,
            )
    by_name = {part.name: part for part in readiness.parts}
    assert by_name["health"].score == 50
    assert by_name["health"].detail.startswith("1 of 2 probes ok; failing billing: status 503")
    assert by_name["queue"].score == 100
    # 100·40 + 100·30 + 50·20 + 100·5 + 100·5 = 9000 → 90
    assert readiness.score == 90 and readiness.band == ReadinessBand.MOSTLY_READY
    assert readiness.notes == []
    assert [(p.name, p.ok) for p in readiness.probes] == [
        ("database", True),
        ("api", True),
        ("billing", False),
        ("queue", True),
    ]
    # The broker gone: the queue scores 0, 5 points off.
    gone = measure_readiness(engine, settings(health_probes=probes, queue_address=address))
    assert next(p.score for p in gone.parts if p.name == "queue") == 0
    assert gone.score == 85


def test_an_unreachable_store_fails_closed(tmp_path: Path, service_url: str) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'store.db'}")
    try:
        blind = measure_readiness(engine, settings())
        probed = measure_readiness(
            engine, settings(health_probes=[{"name": "api", "url": f"{service_url}/ok"}])
        )
    finally:
        engine.dispose()
    by_name = {part.name: part for part in blind.parts}
    assert [by_name[n].score for n in ("workflow", "ui", "health", "database")] == [0, 0, 0, 0]
    assert "the store is unreachable" in by_name["workflow"].detail
    assert blind.score == 0 and blind.band == ReadinessBand.NOT_READY
    # Only the probe is seen; the queue's 5 go to the rest: 100·20 / 95 = 21.05
    assert probed.score == 21.1
