"""Settings: one place for every knob, read from `IMMUNITY_*` variables and `.env`."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = [
    "ClassificationRule",
    "DeployTarget",
    "Environment",
    "HttpProbe",
    "Settings",
    "get_settings",
]

DEFAULT_DATA_DIR = Path(".immunity")
DEFAULT_ENV_FILE = ".env"


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class Environment(BaseModel):
    """A place the service runs; regression tests replay against its base URL.

    Where replays go is configuration, never input: a report only chooses among the environments
    that allow replays (`replay`), and only with the methods they allow (`replay_methods`).
    """

    base_url: str = Field(description="Base URL the replayed paths are joined to.")
    is_production: bool = Field(
        default=False, description="Unsafe methods are not replayed here unless a test allows it."
    )
    replay: bool | None = Field(
        default=None,
        description="May immunity send replays here? Default: never to production, yes elsewhere.",
    )
    replay_methods: list[str] | None = Field(
        default=None,
        description="Methods replays may use here. Default: GET, HEAD and OPTIONS in production,"
        " any method elsewhere.",
    )
    replay_headers: list[str] = Field(
        default_factory=list,
        description="Request headers replayed here besides Content-Type, Accept,"
        " Accept-Language and User-Agent.",
    )
    auth_headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="This environment's own auth, sent with every replay (never stored in a spec).",
    )

    @property
    def allows_replay(self) -> bool:
        """True when immunity may send replays to this environment."""
        return (not self.is_production) if self.replay is None else self.replay

    def allows_method(self, method: str) -> bool:
        """True when a replay may use `method` here."""
        if self.replay_methods is not None:
            return method.upper() in {m.upper() for m in self.replay_methods}
        return not self.is_production or method.upper() in SAFE_METHODS


Scope = Literal["ingest", "read", "review", "admin"]


class ApiToken(BaseModel):
    """A token of the HTTP API, kept as its hash, with the principal it acts as and its scopes."""

    hash: str = Field(description="`sha256:<hex>` of the token (the token itself is never kept).")
    name: str = Field(description="The principal: who decisions made with it are recorded as.")
    scopes: list[Scope] = Field(default_factory=lambda: ["ingest"])
    project: str = Field(default="default", description="The project its events belong to.")


class ClassificationRule(BaseModel):
    """A rule mapping an error to a category: first match wins, checked before the defaults."""

    category: str
    severity: str
    error_types: list[str] = Field(default_factory=list, description="Exact exception type names.")
    message_patterns: list[str] = Field(
        default_factory=list, description="Case-insensitive regular expressions over the message."
    )
    status_codes: list[int] = Field(default_factory=list, description="HTTP status codes.")


class HttpProbe(BaseModel):
    """A health probe: GET a URL, expect a status within a latency."""

    name: str
    url: str
    expected_status: int = 200
    max_latency_ms: float = Field(default=2_000, gt=0)


class DeployTarget(BaseModel):
    """Where a deployment goes; which fields matter depends on `kind`."""

    kind: Literal["local_command", "github_actions", "vercel", "webhook"]
    environment: str = Field(
        default="production", description="The immunity environment this target serves."
    )
    # local_command: the target restarted from a worktree of `repo` at the ref, on `port`.
    command: str = "{python} -m examples.sample_service --port {port}"
    port: int | None = Field(default=None, ge=1, le=65_535)
    health_path: str = "/api/health"
    repo: Path | None = Field(default=None, description="Default: IMMUNITY_REPO_PATH.")
    # github_actions: workflow_dispatch, then the workflow run followed to its conclusion.
    api_url: str = "https://api.github.com"
    repository: str = Field(default="", description="owner/name")
    workflow: str = Field(default="", description="The workflow file name or id.")
    branch: str = "main"
    ref_input: str = Field(default="ref", description="The workflow input that gets the ref.")
    token: SecretStr | None = None
    # vercel: a deploy hook, then the deployment's state followed (needs a token and project).
    hook_url: str = ""
    project_id: str = ""
    team_id: str = ""
    # webhook: a JSON POST; a 2xx means deployed.
    url: str = ""
    timeout_s: float = Field(default=900, gt=0)
    poll_interval_s: float = Field(default=5, gt=0)


class Settings(BaseSettings):
    """Everything immunity reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="IMMUNITY_",
        env_file=DEFAULT_ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""

    # Test generation: the seed's 3-strike rule.
    generation_threshold: int = Field(default=3, ge=1)
    generation_window_days: float = Field(default=7, gt=0)
    initial_confidence: int = Field(default=75, ge=0, le=100)

    # Storage bounds: counts stay exact, samples do not grow without limit.
    max_samples_per_signature: int = Field(default=100, ge=1)
    # Exact counts are kept per signature per bucket (the failure rate and the window read them).
    bucket_minutes: int = Field(default=5, ge=1, le=60)
    max_message_chars: int = Field(default=8_192, ge=64)
    max_frames: int = Field(default=60, ge=1)
    max_body_chars: int = Field(default=65_536, ge=64)
    ingest_batch_size: int = Field(default=2_000, ge=1, le=50_000)

    scrub_enabled: bool = True
    scrub_patterns: list[str] = Field(
        default_factory=list,
        description="Regular expressions whose matches are scrubbed too, in any string"
        " (e.g. an in-house token format).",
    )
    scrub_keys: list[str] = Field(
        default_factory=list,
        description="Key names (fields, headers, query and form names) whose values are scrubbed"
        " too; a name hides any key that holds it, separators and case aside.",
    )
    classification_rules: list[ClassificationRule] = Field(default_factory=list)

    # Ingest API: bearer tokens (raw, or "sha256:<hex>" as `immunity token create` writes them)
    # and Sentry DSN keys by project id.
    api_tokens: list[ApiToken | str] = Field(
        default_factory=list,
        description="API tokens: entries with name, scopes and project, or bare tokens/hashes"
        " (legacy: scopes ingest and read, project default).",
    )
    sentry_projects: dict[str, str] = Field(
        default_factory=dict, description="Sentry project id → DSN public key."
    )
    max_request_bytes: int = Field(default=1_048_576, ge=1024)

    # Health loop (seed 001): failure rate over the last hour.
    health_window_minutes: int = Field(default=60, ge=1)
    health_failure_rate: float = Field(default=0.5, ge=0, le=1)
    health_min_attempts: int = Field(default=5, ge=1)
    alert_cooldown_minutes: int = Field(default=30, ge=0)
    alert_blocks: list[str] = Field(
        default_factory=list, description="Names of Prefect notification blocks to alert through."
    )
    alert_webhook_url: str = Field(default="", description="Plain webhook receiving alert JSON.")

    # Regression runs (issue 4): concurrency inside a chunk task, a few chunk tasks per run.
    regression_chunk_size: int = Field(default=250, ge=1, le=10_000)
    regression_concurrency: int = Field(default=32, ge=1, le=1_000)
    regression_timeout_s: float = Field(default=10, gt=0, le=600)
    regression_transport_retries: int = Field(default=2, ge=0, le=10)
    regression_reruns: int = Field(
        default=1, ge=0, le=5, description="Re-runs of a failed test; a pass on re-run is flaky."
    )
    confidence_pass_step: int = Field(default=5, ge=0, le=100)
    confidence_fail_step: int = Field(default=10, ge=0, le=100)
    flaky_window: int = Field(default=10, ge=2, description="Recent runs the flaky share is over.")
    flaky_quarantine_share: float = Field(default=0.3, gt=0, le=1)
    critical_tags: list[str] = Field(default_factory=lambda: ["critical"])
    critical_types: list[str] = Field(default_factory=lambda: ["regression", "smoke"])

    # Reproduction check (issue 9): a generated test replays once before it is trusted.
    reproduction_environment: str | None = Field(
        default=None,
        description="Where tests replay when their failure's own environment does not allow"
        " replays (or is not configured).",
    )
    reproduction_retry_minutes: float = Field(
        default=60, ge=0, description="Least time between re-checks of an unverified test."
    )
    # The replay marker (X-Immunity-Replay) is signed: a report cannot pass for a replay's.
    replay_secret: SecretStr | None = Field(
        default=None,
        description="Key signing replay markers (default: a random key kept in"
        " <data_dir>/replay.key); processes sharing a store must share it.",
    )
    replay_marker_ttl_minutes: float = Field(
        default=60, gt=0, le=10_080, description="How long a replay's report counts as one."
    )

    # UI automation (issue 5): Debian's Chromium and chromedriver, never a downloaded driver.
    chromium_binary: str = "/usr/bin/chromium"
    chromedriver: str = "/usr/bin/chromedriver"
    ui_browsers: int = Field(default=2, ge=1, le=16, description="Browser sessions reused.")
    ui_timeout_s: float = Field(default=10, gt=0, le=300, description="Per wait and page load.")
    ui_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts pages may load from besides the tested one (CDNs, fonts); others fail.",
    )

    # Heal loop (issue 6): the target's git working copy, the model, and the approval pause.
    repo_path: Path | None = Field(
        default=None, description="A git working copy of the target service's code."
    )
    source_roots: list[str] = Field(
        default_factory=lambda: ["."],
        description="Repository-relative folders a fix may change; anything else is refused.",
    )
    sensitive_paths: list[str] = Field(
        default_factory=lambda: [
            ".github/*",
            ".gitlab-ci.yml",
            "*auth*",
            "*secret*",
            "*credential*",
            "*password*",
            "*token*",
            "*.pem",
            "*.key",
            ".env*",
            "*migrations/*",
            "Dockerfile",
            "*.tf",
        ],
        description="Glob patterns a fix touches only at high risk (refused outright: CI config).",
    )
    target_command: str = Field(
        default="{python} -m examples.sample_service --port {port}",
        description="Starts the target from a working copy ({python}, {port}); '' if it cannot.",
    )
    target_health_path: str = "/api/health"
    target_start_timeout_s: float = Field(default=30, gt=0, le=600)
    llm_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("IMMUNITY_LLM_API_KEY", "OPENAI_API_KEY")
    )
    llm_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("IMMUNITY_LLM_BASE_URL", "OPENAI_BASE_URL")
    )
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = Field(default=60, gt=0, le=600)
    llm_max_retries: int = Field(default=2, ge=0, le=5)
    heal_pattern_min_confidence: float = Field(default=0.7, ge=0, le=1)
    heal_max_diff_lines: int = Field(default=200, ge=1, description="Bigger diffs are refused.")
    heal_after_failures: int = Field(
        default=3, ge=1, description="Failed runs in a row before a fix is proposed."
    )
    heal_cooldown_hours: float = Field(
        default=24, ge=0, description="Least time before re-proposing after a rejection."
    )
    heal_deployment: str = Field(
        default="propose-fix/propose-fix", description="The deployment the regression loop starts."
    )
    approval_timeout_s: int = Field(default=86_400, ge=1)
    approval_poll_s: int = Field(default=2, ge=1, le=60)
    approval_suspend: bool = Field(
        default=False, description="Suspend (not pause) while waiting: for deployments only."
    )
    fix_branch_prefix: str = "immunity/fix-"

    # Deploy loop (issue 7): readiness gate, targets, the watch after a deployment.
    readiness_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "workflow": 40,
            "ui": 30,
            "health": 20,
            "database": 5,
            "queue": 5,
        },
        description="Seed 003's weights; a part that cannot be measured gives its weight away.",
    )
    health_probes: list[HttpProbe] = Field(default_factory=list)
    queue_address: str | None = Field(default=None, description="host:port of a queue/broker.")
    deploy_targets: dict[str, DeployTarget] = Field(default_factory=dict)
    deploy_target: str | None = Field(
        default=None, description="Where an approved and verified fix is deployed (none: not)."
    )
    deploy_min_readiness: float = Field(default=95, ge=0, le=100)
    deploy_watch_s: float = Field(
        default=300, gt=0, description="How long a deployment is watched."
    )
    deploy_watch_interval_s: float = Field(default=30, gt=0)
    deploy_max_rate_increase: float = Field(
        default=0.1, ge=0, le=1, description="A failure-rate rise above this rolls back."
    )
    deploy_smoke_types: list[str] = Field(default_factory=lambda: ["smoke"])
    suspect_window_minutes: float = Field(
        default=60, gt=0, description="A signature first seen this soon after a deploy is linked."
    )
    experiment_alpha: float = Field(default=0.05, gt=0, lt=1)
    experiment_min_samples: int = Field(default=20, ge=1)
    experiment_max_samples: int = Field(default=200, ge=1)

    environments: dict[str, Environment] = Field(
        default_factory=lambda: {
            "production": Environment(base_url="http://127.0.0.1:8000", is_production=True),
        }
    )
    # Module prefixes treated as the application's own code when a frame does not say.
    in_app_include: list[str] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read `IMMUNITY_ENV_FILE` (another dotenv file; empty: none) each time settings load.

        An explicit `Settings(_env_file=...)` still wins; the test suite sets it empty so a
        developer's `.env` never reaches a test.
        """
        chosen = os.environ.get("IMMUNITY_ENV_FILE")
        if chosen is not None and getattr(dotenv_settings, "env_file", None) == DEFAULT_ENV_FILE:
            dotenv_settings = DotEnvSettingsSource(settings_cls, env_file=chosen or None)
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    @field_validator("scrub_patterns")
    @classmethod
    def _compiled_patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                what = f"scrub pattern {pattern!r} is not a regular expression: {error}"
                raise ValueError(what) from None
        return patterns

    @field_validator("database_url")
    @classmethod
    def _normalise_postgres(cls, url: str) -> str:
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @model_validator(mode="after")
    def _threshold_fits_samples(self) -> Settings:
        # The 7-day count is taken over stored samples, so the bound must hold the threshold.
        if self.generation_threshold > self.max_samples_per_signature:
            raise ValueError("generation_threshold cannot exceed max_samples_per_signature")
        return self

    @property
    def reports_dir(self) -> Path:
        """Where every suite run's JSON report and JUnit XML are written."""
        return self.data_dir / "reports"

    @property
    def artifacts_dir(self) -> Path:
        """Where failed UI tests' screenshots, page sources and console logs are kept."""
        return self.data_dir / "artifacts"

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or a SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'immunity.db').as_posix()}"


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings (cached: `get_settings.cache_clear()` after changes)."""
    return Settings()
