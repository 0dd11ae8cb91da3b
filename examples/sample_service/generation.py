"""Project generation: plan files from a prompt, resolve and check dependencies, ask the model."""

from __future__ import annotations

import asyncio
import html
import json
import re
import uuid
from dataclasses import dataclass, field

from .errors import DependencyValidationError, RateLimitError
from .faults import Fault, FaultState

__all__ = [
    "ALLOWED_PACKAGES",
    "FEATURES",
    "GeneratedFile",
    "GenerationService",
    "ModelClient",
    "Project",
    "plan_files",
]

# Dependencies a generated project may use, pinned (the seed's dependency allow-list).
ALLOWED_PACKAGES: frozenset[str] = frozenset(
    {
        "react@18.3.1",
        "react-dom@18.3.1",
        "react-router-dom@6.28.0",
        "vue@3.5.13",
        "vue-router@4.5.0",
        "fuse.js@7.0.0",
    }
)

# Feature keywords in a prompt -> the component each one adds (so file counts follow the prompt).
FEATURES: dict[str, str] = {
    "recipe": "RecipeCard",
    "search": "SearchBar",
    "cart": "ShoppingCart",
    "login": "LoginForm",
    "blog": "BlogPost",
    "gallery": "ImageGallery",
    "contact": "ContactForm",
    "dashboard": "Dashboard",
}

_BASE_FILES: dict[str, tuple[str, ...]] = {
    "html": ("index.html", "styles.css"),
    "react": ("package.json", "index.html", "src/main.jsx", "src/App.jsx"),
    "vue": ("package.json", "index.html", "src/main.js", "src/App.vue"),
}

_COMPONENT_PATH: dict[str, str] = {
    "html": "js/{name}.js",
    "react": "src/components/{name}.jsx",
    "vue": "src/components/{name}.vue",
}

_ROUTER: dict[str, str] = {"react": "react-router-dom@6.28.0", "vue": "vue-router@4.5.0"}
_CORE: dict[str, tuple[str, ...]] = {
    "html": (),
    "react": ("react@18.3.1", "react-dom@18.3.1"),
    "vue": ("vue@3.5.13",),
}

# What the model call really waits, and the timeout it reports (the real service waits 2 s).
MODEL_TIMEOUT_S = 2.0
_SIMULATED_TIMEOUT_S = 0.02
_SLOW_MODEL_LATENCY_S = 1.0


@dataclass(frozen=True)
class GeneratedFile:
    """One file of a generated project."""

    path: str
    content: str


@dataclass
class Project:
    """A generated project: its id, its files and the packages it depends on."""

    project_id: str
    framework: str
    files: list[GeneratedFile] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)


def detect_features(prompt: str) -> list[str]:
    """Return the feature keywords the prompt mentions, in a stable order."""
    words = set(re.findall(r"[a-z]+", prompt.lower()))
    stems = {w.rstrip("s") for w in words} | words
    return [keyword for keyword in FEATURES if keyword in stems]


def plan_files(prompt: str, framework: str) -> list[str]:
    """Return the paths a project for this prompt will have: base files plus one per feature."""
    paths = list(_BASE_FILES[framework])
    pattern = _COMPONENT_PATH[framework]
    paths.extend(pattern.format(name=FEATURES[keyword]) for keyword in detect_features(prompt))
    return paths


def _template_dependencies(feature: str, framework: str, faults: FaultState) -> list[str]:
    # Multi-page templates need a router. The faulty recipe template pins a router major the
    # allow-list does not have, for every framework (the seed's recipe-website incident).
    if feature == "recipe" and faults.is_enabled(Fault.DEPENDENCY_VALIDATION):
        return ["react-router-dom@7.1.0"]
    if feature in {"recipe", "blog", "dashboard"} and framework in _ROUTER:
        return [_ROUTER[framework]]
    if feature == "search" and framework != "html":
        return ["fuse.js@7.0.0"]
    return []


def resolve_dependencies(prompt: str, framework: str, faults: FaultState) -> list[str]:
    """Return the packages the project needs, core first, without duplicates."""
    resolved: list[str] = list(_CORE[framework])
    for feature in detect_features(prompt):
        for package in _template_dependencies(feature, framework, faults):
            if package not in resolved:
                resolved.append(package)
    return resolved


def _check_allowed(package: str, project_id: str) -> None:
    if package not in ALLOWED_PACKAGES:
        raise DependencyValidationError(
            f"dependency validation failed: package {package!r} is not in the allow-list"
            f" for project {project_id}",
            context={"project_id": project_id, "package": package},
        )


def validate_dependencies(dependencies: list[str], project_id: str) -> None:
    """Raise DependencyValidationError for the first package outside the allow-list."""
    for package in dependencies:
        _check_allowed(package, project_id)


class ModelClient:
    """Stands in for the upstream AI model the generator calls."""

    def __init__(self, faults: FaultState, *, timeout_s: float = MODEL_TIMEOUT_S) -> None:
        self._faults = faults
        self.timeout_s = timeout_s

    async def _request(self, prompt: str, framework: str) -> str:
        if self._faults.is_enabled(Fault.RATE_LIMIT):
            raise RateLimitError(
                "upstream rate limit exceeded: 429 Too Many Requests",
                context={"upstream": "ai-model", "retry_after_s": 30},
            )
        if self._faults.is_enabled(Fault.SLOW_MODEL):
            await asyncio.sleep(_SLOW_MODEL_LATENCY_S)
        await asyncio.sleep(0)
        return f"Generated {framework} project for: {prompt.strip()}"

    async def complete(self, prompt: str, framework: str) -> str:
        """Return the model's text; TimeoutError when it does not answer within the timeout."""
        # The simulated wait is short so the fault fails fast; the message keeps the real timeout.
        wait_s = min(self.timeout_s, _SIMULATED_TIMEOUT_S)
        try:
            return await asyncio.wait_for(self._request(prompt, framework), timeout=wait_s)
        except TimeoutError as exc:
            raise TimeoutError(f"AI model timed out after {self.timeout_s:.1f}s") from exc


def _render(path: str, summary: str, project: Project) -> str:
    if path == "package.json":
        deps = dict(package.rsplit("@", 1) for package in project.dependencies)
        manifest = {"name": f"project-{project.project_id[:8]}", "dependencies": deps}
        return json.dumps(manifest, indent=2) + "\n"
    if path.endswith(".html"):
        return f"<!doctype html>\n<html><body><h1>{html.escape(summary)}</h1></body></html>\n"
    if path.endswith(".css"):
        return "body { font-family: sans-serif; margin: 2rem; }\n"
    name = path.rsplit("/", 1)[-1].split(".", 1)[0]
    return f"// {name}: {summary}\nexport default function {name}() {{ return null; }}\n"


class GenerationService:
    """Turns a prompt into a project, the way the seed's orchestrator does."""

    def __init__(self, faults: FaultState, model: ModelClient | None = None) -> None:
        self._faults = faults
        self._model = model or ModelClient(faults)

    async def generate(self, prompt: str, framework: str) -> Project:
        """Return a generated project, or raise the failure the switched-on faults cause."""
        project = Project(project_id=str(uuid.uuid4()), framework=framework)
        paths = plan_files(prompt, framework)
        project.dependencies = resolve_dependencies(prompt, framework, self._faults)
        validate_dependencies(project.dependencies, project.project_id)
        summary = await self._model.complete(prompt, framework)
        project.files = [GeneratedFile(path, _render(path, summary, project)) for path in paths]
        return project
