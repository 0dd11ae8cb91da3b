"""Every public error immunity defines is on the one tree, and still the builtin it was before."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import immunity
from immunity.models.errors import (
    ConflictError,
    ImmunityError,
    InvalidInputError,
    NotFoundError,
    RefusedError,
    UnavailableError,
)

# Not immunity's own code: the sample service stands for a watched app, with its own errors;
# migrations are alembic scripts; tests are tests.
SKIPPED_PACKAGES = ("immunity.examples", "immunity.migrations", "immunity.tests", "immunity.bench")
# Signals a step runner raises and catches itself; they never leave their module.
CONTROL_FLOW = {
    "immunity.tasks.ui.steps.StepFailed",
    "immunity.tasks.ui.steps.StepBroken",
    "immunity.tasks.ui.steps.StepRefused",
}


def _public_errors() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(immunity.__path__, "immunity."):
        if module_info.name.startswith(SKIPPED_PACKAGES):
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


PUBLIC_ERRORS = _public_errors()


def test_the_walk_finds_the_errors_of_every_loop() -> None:
    # Guards the test below against passing on an empty or partial walk.
    for expected in (
        "immunity.tasks.heal.store.ProposalNotFoundError",
        "immunity.tasks.heal.llm.LlmUnavailable",
        "immunity.tasks.deploy.tasks.DeployRefusedError",
        "immunity.tasks.ingest.sentry.SentryFormatError",
        "immunity.cli.pytest_plugin.StoreUnavailableError",
        "immunity.deployments.stack.StackError",
        "immunity.api.errors.ApiError",
    ):
        assert expected in PUBLIC_ERRORS


@pytest.mark.parametrize("name", sorted(set(PUBLIC_ERRORS) - CONTROL_FLOW))
def test_every_public_error_derives_from_immunity_error(name: str) -> None:
    error = PUBLIC_ERRORS[name]
    assert issubclass(error, ImmunityError), f"{name} is not on the tree: {error.__mro__}"


# (error, the branch it belongs to, the builtin callers caught it as before the tree)
PLACED = [
    ("tasks.shared.target.TargetError", UnavailableError, RuntimeError),
    ("tasks.deploy.targets._common.TargetConfigError", InvalidInputError, ValueError),
    ("tasks.deploy.targets._common.FollowError", UnavailableError, RuntimeError),
    ("tasks.deploy.experiment_store.ExperimentNotFoundError", NotFoundError, LookupError),
    ("tasks.deploy.store.DeploymentNotFoundError", NotFoundError, LookupError),
    ("tasks.deploy.tasks.DeployRefusedError", RefusedError, ValueError),
    ("tasks.ingest.sentry.SentryFormatError", InvalidInputError, ValueError),
    ("tasks.regress.testdefs.DefinitionError", InvalidInputError, ValueError),
    ("tasks.regress.manual_tests.DefinitionConflictError", ConflictError, ValueError),
    ("tasks.regress.selection.UnknownEnvironmentError", InvalidInputError, ValueError),
    ("tasks.heal.llm.LlmUnavailable", UnavailableError, Exception),
    ("tasks.heal.llm.LlmRefused", RefusedError, Exception),
    ("tasks.heal.git_repo.GitError", UnavailableError, RuntimeError),
    ("tasks.heal.approvals.DecisionConflictError", ConflictError, RuntimeError),
    ("tasks.heal.store.ProposalNotFoundError", NotFoundError, LookupError),
    ("tasks.heal.store.InvalidTransitionError", ConflictError, ValueError),
    ("tasks.heal.context.SignatureNotFoundError", NotFoundError, LookupError),
    ("cli.pytest_plugin.StoreUnavailableError", UnavailableError, Exception),
    ("deployments.stack.StackError", UnavailableError, RuntimeError),
]


@pytest.mark.parametrize(("name", "branch", "builtin"), PLACED)
def test_each_error_is_on_its_branch_and_still_its_old_builtin(
    name: str, branch: type[ImmunityError], builtin: type[Exception]
) -> None:
    error = PUBLIC_ERRORS[f"immunity.{name}"]
    assert issubclass(error, branch)
    assert issubclass(error, builtin)
