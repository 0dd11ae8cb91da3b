"""immunity: recurring production failures become regression tests, fixes and safe deploys.

The repository's top-level folders are this package's subpackages: `flows/` is `immunity.flows`,
`tasks/regress/` is `immunity.tasks.regress`, `models/` is `immunity.models`, and so on.
"""

from __future__ import annotations

__all__: list[str] = []
