"""Reading parsed YAML while trusting only the values no problem was reported about.

Shared by the manifest's cross-value rules and the platform settings' own, so that a file with one wrong
value still gets every other rule checked, without a rule tripping over the wrong value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from meshpipe.validation.yamlsafe import parent_path

ABSENT = object()  # what a doubtful value reads as
_ABSENT = ABSENT


class TrustedValues:
    """Reads values from parsed YAML, trusting only those no problem was reported about."""

    def __init__(self, data: Any, bad_paths: Iterable[str]) -> None:
        self.data = data
        self.bad = set(bad_paths)
        # Every path that holds a doubtful one, so that each question costs the depth of a path, not the
        # number of problems (a list of 20000 bad items must not make the checks quadratic).
        self.holds_bad: set[str] = set()
        for path in self.bad:
            while path:
                path = parent_path(path)
                self.holds_bad.add(path)

    def _under_bad(self, path: str) -> bool:
        """Whether ``path`` or something that holds it has a problem."""
        while True:
            if path in self.bad:
                return True
            if not path:
                return False
            path = parent_path(path)

    def is_bad(self, path: str) -> bool:
        # A value is doubtful when a problem names it, something inside it, or something that holds it.
        return path in self.holds_bad or self._under_bad(path)

    def items_of(self, path: str) -> Any:
        """The list or mapping at ``path`` even when some of its items are doubtful (rules on the whole,
        such as counts and duplicates, still hold); ``None`` when absent, ``_ABSENT`` when doubtful."""
        if self._under_bad(path):
            return _ABSENT
        return self._lookup(path, None)

    def get(self, path: str, default: Any = _ABSENT) -> Any:
        """The value at ``path`` (dotted keys), ``default`` when absent, ``_ABSENT`` when doubtful."""
        if self.is_bad(path):
            return _ABSENT
        return self._lookup(path, default)

    def _lookup(self, path: str, missing: Any) -> Any:
        """The value at ``path`` (dotted keys); ``missing`` when a key is absent, ``_ABSENT`` when something
        on the way is not a mapping."""
        node = self.data
        for key in path.split("."):
            if not isinstance(node, dict):
                return _ABSENT
            if key not in node:
                return missing
            node = node[key]
        return node
