"""The state store and the workspace lock (DESIGN §5, §7).

`StateStore` (store.py) records applies, realized images, attempts and performance rows in SQLite;
`WorkspaceLock` (lock.py) keeps one apply at a time per store; the records are in model.py.
The names below are imported lazily, so `import madengine.state.model` loads neither sqlite3 nor fcntl.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from madengine.state.lock import WorkspaceLock
    from madengine.state.store import StateStore, state_path

__all__ = ["StateStore", "WorkspaceLock", "state_path"]

_WHERE = {"StateStore": "store", "state_path": "store", "WorkspaceLock": "lock"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"madengine.state.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'madengine.state' has no attribute {name!r}")
