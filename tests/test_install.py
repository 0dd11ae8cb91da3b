"""The wheel: one import name, `immunity`, installed into a project with its own `models`, `api`,
`tasks` and `cli` packages; its tests, the stored tests (`pytest --immunity-db`) and
`import immunity` all work there (issue 17).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import Session

import immunity
from immunity.examples.sample_service import create_app, start_server
from immunity.models.db import get_engine
from immunity.models.tables import RegressionTest
from tests.cli.test_pytest_plugin import RECIPE, set_fault, stored

pytestmark = [pytest.mark.slow, pytest.mark.install]

REPO = Path(__file__).resolve().parents[1]
NOT_PACKAGED = ("tests", "bench", "docs", ".ci")  # top-level folders of a clone, not of the wheel
# What a uv failure says when it could not reach the package registry.
UNREACHABLE = re.compile(
    r"error sending request|tcp connect error|dns error|failed to lookup address|"
    r"Connection refused|Network is unreachable|timed out",
    re.IGNORECASE,
)

# The project immunity is installed into: its own top-level `models`, `api`, `tasks` and `cli`.
PROJECT = {
    "pyproject.toml": """\
[project]
name = "shop"
version = "0.0.1"

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]
addopts = "--strict-markers"
filterwarnings = [
    "error",
    "ignore::DeprecationWarning",
    "ignore::PendingDeprecationWarning",
    "ignore::ResourceWarning",
]
""",
    # The project's own settings: if the plugin read them, every stored run would be refused.
    ".env": "IMMUNITY_REGRESSION_TIMEOUT_S=-1\n",
    "models/__init__.py": 'OWNER = "shop"\n',
    # Each imports the one before by its bare name, as a project of its own does.
    "api/__init__.py": "from models import OWNER\n\ndef route():\n    return OWNER + ':api'\n",
    "tasks/__init__.py": "from api import route\n\ndef job():\n    return route() + ':task'\n",
    "cli/__init__.py": "from tasks import job\n\ndef main():\n    return job() + ':cli'\n",
    "tests/test_shop.py": """\
import importlib.util
from pathlib import Path

import api
import cli
import immunity.cli.pytest_plugin
import immunity.models.settings
import models
import tasks

ROOT = Path(__file__).resolve().parents[1]


def test_its_own_packages_are_its_own():
    for package in (models, api, tasks, cli):
        assert Path(package.__file__).resolve().parent.parent == ROOT, package.__file__
    assert cli.main() == "shop:api:task:cli"


def test_immunity_is_one_installed_package_beside_them():
    assert Path(immunity.__file__).resolve().parents[1].name == "site-packages"
    assert immunity.models is not models and immunity.cli is not cli
    for name in ("flows", "deployments", "examples", "migrations"):
        assert importlib.util.find_spec(name) is None, name
""",
}


@dataclass
class Built:
    """The wheel, and the files of the clean copy of the repository it was built from."""

    wheel: Path
    files: list[Path]


@dataclass
class Installed:
    """A fresh virtualenv holding the wheel, and the project that uses it."""

    python: Path
    project: Path


def _uv() -> list[str]:
    if found := shutil.which("uv"):
        return [found]
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    pytest.skip("uv is neither on PATH nor importable: cannot build or install the wheel")


def _env(**extra: str) -> dict[str, str]:
    """Return this process's environment without its IMMUNITY_*, pytest and virtualenv settings."""
    dropped = ("IMMUNITY_", "PYTEST_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped)} | extra


def _run(command: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = _env(**extra)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _uv_from_registry(args: list[str], cwd: Path) -> None:
    """Run a uv command from its cache, else from the registry; skip if that is unreachable."""
    if _run([*_uv(), *args, "--offline"], cwd).returncode == 0:
        return
    done = _run([*_uv(), *args], cwd)
    if done.returncode != 0 and (found := UNREACHABLE.search(done.stderr)):
        pytest.skip(f"the package registry is unreachable (uv {args[0]}: {found.group(0)})")
    assert done.returncode == 0, done.stdout + done.stderr


def _clean_copy(target: Path) -> list[Path]:
    """Copy what a clone would hold (tracked files as they are now, new unignored ones); list it."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: cannot tell which files a clone would hold")
    listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    names = subprocess.run(listing, cwd=REPO, capture_output=True, check=True).stdout.decode()
    copied = []
    for name in filter(None, names.split("\0")):
        if (REPO / name).is_file():  # a deleted file git still tracks is not copied
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
            copied.append(Path(name))
    return copied


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The wheel `uv build` makes from a clean copy of this repository (once per module)."""
    source, dist = tmp_path_factory.mktemp("clone"), tmp_path_factory.mktemp("dist")
    files = _clean_copy(source)
    _uv_from_registry(["build", "--wheel", "-q", "-o", str(dist), str(source)], source)
    [wheel] = dist.glob("immunity-*.whl")
    return Built(wheel, files)


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh virtualenv with the wheel installed, and the throw-away project beside it."""
    root = tmp_path_factory.mktemp("install")
    venv = root / "venv"
    done = _run([*_uv(), "venv", "-q", "--python", sys.executable, str(venv)], root)
    assert done.returncode == 0, done.stderr
    python = venv / "bin" / "python"
    _uv_from_registry(["pip", "install", "-q", "--python", str(python), str(built.wheel)], root)
    project = root / "shop"
    for name, text in PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    return Installed(python, project)


@pytest.fixture
def service() -> Iterator[str]:
    server = start_server(create_app())
    try:
        yield server.base_url
    finally:
        server.stop()


def _outcomes(xml: Path) -> dict[str, str]:
    """Return each test's outcome from a JUnit XML file, by name."""
    outcomes = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        found = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name", "")] = {"failure": "failed", "error": "error"}.get(
            found[0] if found else "", "skipped" if found else "passed"
        )
    return outcomes


def test_the_wheel_has_one_import_name_and_carries_its_data(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    with zipfile.ZipFile(built.wheel) as archive:
        names = archive.namelist()
        [info] = {name.split("/")[0] for name in names if ".dist-info/" in name}
        top_level = archive.read(f"{info}/top_level.txt").decode().split()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    tops = sorted({name.split("/")[0] for name in names})
    with capsys.disabled():
        print(f"\n{built.wheel.name}: top-level names {tops}, top_level.txt {top_level}")

    assert tops == ["immunity", info] and top_level == ["immunity"]
    # Every module of the clone outside tests/, bench/ and docs/, its data, and nothing else.
    packaged = [path for path in built.files if path.parts[0] not in NOT_PACKAGED]
    expected = {f"immunity/{path}" for path in packaged if path.suffix == ".py"}
    expected |= {f"immunity/{path}" for path in packaged if path.match("examples/*/*.yaml")}
    expected |= {"immunity/migrations/script.py.mako"}
    assert {name for name in names if not name.startswith(info)} == expected
    assert "immunity/migrations/versions/0001_initial_schema.py" in expected
    assert any(name.startswith("immunity/examples/ui_scenarios/") for name in expected)
    assert "[console_scripts]\nimmunity = immunity.cli.main:app" in entry_points
    assert "[pytest11]\nimmunity = immunity.cli.pytest_plugin" in entry_points


def test_installed_into_a_project_with_its_own_models_api_tasks_and_cli(
    installed: Installed, service: str, tmp_path: Path
) -> None:
    python, project = installed.python, installed.project
    pytest_command = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-rA"]

    own = _run(pytest_command, project)
    assert own.returncode == 0, own.stdout + own.stderr
    assert re.search(r"^plugins: .*immunity-", own.stdout, re.MULTILINE), own.stdout
    assert "2 passed" in own.stdout

    # A store the installed console script migrated, holding a passing and a failing test.
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgraded = _run(
        [str(python.parent / "immunity"), "db", "upgrade"], tmp_path, IMMUNITY_DATABASE_URL=url
    )
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    with Session(get_engine(url)) as session:
        session.add_all(
            [
                RegressionTest(
                    name="smoke_health",
                    environment="staging",
                    spec={"method": "GET", "path": "/api/health"},
                    expectations={"status": 200},
                ),
                RegressionTest(
                    name="regression_recipe",
                    environment="staging",
                    spec={"method": "POST", "path": "/api/generate", "body": RECIPE},
                    expectations={"should_not_fail": True},
                ),
            ]
        )
        session.commit()
    set_fault(service, True)
    environments = json.dumps({"staging": {"base_url": service, "is_production": False}})
    settings = {"IMMUNITY_ENVIRONMENTS": environments, "IMMUNITY_DATA_DIR": str(tmp_path / "data")}
    xml = tmp_path / "junit.xml"
    stored_run = [*pytest_command, "--junitxml", str(xml), "--immunity-db", url]
    both = _run(stored_run, project, **settings)

    assert both.returncode == 1, both.stdout + both.stderr  # the failing stored test fails the run
    assert _outcomes(xml) == {
        "test_its_own_packages_are_its_own": "passed",
        "test_immunity_is_one_installed_package_beside_them": "passed",
        "smoke_health": "passed",
        "regression_recipe": "failed",
    }, both.stdout
    assert "regression_recipe failed against staging" in both.stdout
    _, executions, suites = stored(url)
    assert sorted(e.status for e in executions) == ["failed", "passed"]
    assert [(s.trigger, s.total, s.failed) for s in suites] == [("ci", 2, 1)]

    # The project's .env is read only when named, and then its invalid value is refused.
    named = _run([*stored_run, "--immunity-env-file", ".env"], project, **settings)
    assert named.returncode == 4, named.stdout + named.stderr
    assert "immunity settings are invalid" in named.stderr + named.stdout
    assert "regression_timeout_s" in named.stderr + named.stdout

    imported = _run([str(python), "-c", "import immunity; print(immunity.__all__)"], project)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == repr(immunity.__all__)


def test_installed_prefect_yaml_lands_in_the_project_and_its_entrypoints_load(
    installed: Installed,
) -> None:
    python, project = installed.python, installed.project
    script = (
        "import yaml; from prefect.flows import load_flow_from_entrypoint as load;"
        "from immunity.cli.main import app; app(['prefect-yaml'], standalone_mode=False);"
        "entries = yaml.safe_load(open('prefect.yaml'))['deployments'];"
        "print(len(entries), len({load(entry['entrypoint']).name for entry in entries}))"
    )
    done = _run([str(python), "-c", script], project, IMMUNITY_ENV_FILE="")

    assert done.returncode == 0, done.stdout + done.stderr
    deployments, flows = map(int, done.stdout.split()[-2:])
    assert deployments >= 10 and flows == deployments  # every module entrypoint is a flow
    assert (project / "prefect.yaml").is_file()  # in the current directory, not site-packages
    assert not list(python.parents[1].glob("lib/python*/site-packages/immunity/prefect.yaml"))
