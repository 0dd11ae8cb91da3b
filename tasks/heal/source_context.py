"""Stack frames resolved to files of the repository: the source a fix strategy may look at.

Pure except that it reads files under the repository; it never returns a path outside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from immunity.models.fixes import SourceLocation, SourceSnippet

__all__ = ["MAX_LOCATIONS", "locations", "repo_path_for_frame", "snippets"]

MAX_LOCATIONS = 10


def _relative(path: str) -> PurePosixPath | None:
    """Return a clean repository-relative path, or None for absolute or `..` paths."""
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and pure.parts[0].endswith(":")):
        return None
    return PurePosixPath(*[part for part in pure.parts if part != "."])


def _roots(source_roots: Sequence[str]) -> list[PurePosixPath]:
    roots = [_relative(root) for root in source_roots]
    return [root for root in roots if root is not None]


def _existing(repo: Path, candidate: PurePosixPath, roots: Sequence[PurePosixPath]) -> bool:
    """Return whether the candidate is a file that really lies under the repo and a root."""
    if not candidate.parts:
        return False
    base = repo.resolve()
    real = (base / candidate).resolve()
    if not real.is_file() or not real.is_relative_to(base):
        return False
    # A symlink may point elsewhere inside the repo; what counts is where the file really is.
    return any(real.is_relative_to((base / root).resolve()) for root in roots)


def repo_path_for_frame(
    frame: Mapping[str, Any], repo: Path, source_roots: Sequence[str]
) -> str | None:
    """Return the repo-relative path of the frame's file under a source root, or None."""
    roots = _roots(source_roots)
    if not roots:
        return None
    module = frame.get("module")
    # `__main__` names no file: the script's own filename does.
    dotted_ok = isinstance(module, str) and all(p.isidentifier() for p in module.split("."))
    if dotted_ok and module != "__main__":
        dotted = PurePosixPath(*module.split("."))
        for base in dotted.with_suffix(".py"), dotted / "__init__.py":
            # A module path is relative to the root it is imported from (`src`), or to the repo.
            for candidate in [root / base for root in roots] + [base]:
                if _existing(repo, candidate, roots):
                    return candidate.as_posix()
    filename = frame.get("filename")
    if isinstance(filename, str) and filename:
        parts = [part for part in filename.replace("\\", "/").split("/") if part not in ("", ".")]
        for start in range(len(parts)):
            if ".." in parts[start:]:
                continue
            candidate = PurePosixPath(*parts[start:])
            if _existing(repo, candidate, roots):
                return candidate.as_posix()
    return None


def _read(repo: Path, path: str) -> str | None:
    try:
        return (repo / path).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def locations(
    frames: Sequence[Mapping[str, Any]], repo: Path, source_roots: Sequence[str]
) -> list[SourceLocation]:
    """Return the in-app frames as source locations, innermost first, at most ten."""
    found: list[SourceLocation] = []
    seen: set[tuple[str, int]] = set()
    texts: dict[str, str | None] = {}
    for frame in reversed(frames):
        lineno = frame.get("lineno")
        if not frame.get("in_app") or not isinstance(lineno, int) or lineno < 1:
            continue
        path = repo_path_for_frame(frame, repo, source_roots)
        if path is None or (path, lineno) in seen:
            continue
        if path not in texts:
            texts[path] = _read(repo, path)
        text = texts[path]
        # A line past the end means the file is not the one that ran.
        if text is None or lineno > len(text.splitlines()):
            continue
        seen.add((path, lineno))
        function = frame.get("function")
        found.append(
            SourceLocation(
                path=path,
                lineno=lineno,
                function=function if isinstance(function, str) else "",
                text=text,
            )
        )
        if len(found) == MAX_LOCATIONS:
            break
    return found


def snippets(locations: Sequence[SourceLocation], radius: int = 20) -> list[SourceSnippet]:
    """Return the lines around each location, `radius` either side, with its line in focus."""
    result: list[SourceSnippet] = []
    for location in locations:
        lines = location.text.splitlines(keepends=True)
        start = max(1, location.lineno - radius)
        end = min(len(lines), location.lineno + radius)
        result.append(
            SourceSnippet(
                path=location.path,
                start_line=start,
                text="".join(lines[start - 1 : end]),
                focus_line=location.lineno,
            )
        )
    return result
