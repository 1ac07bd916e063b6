"""Base-image pins: the digest each `FROM` / `ARG BASE_DOCKER` reference resolved to, kept in the lock.

Like `flake.lock`: a pin, once in the lock, is reused as it is (so locking is repeatable and needs no
network); only a reference new to the lock is resolved, and `lock --update [IMAGE]` re-resolves on
request. A reference that no reachable registry knows is pinned to null, and stays so until updated.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from madengine.lock.lockfile import Lock

Resolver = Callable[[str], "str | None"]
UNPINNABLE = ("scratch",)


def previous_pins(lock: Lock | None) -> dict[str, str | None]:
    """ref -> digest from an existing lock."""
    if not lock:
        return {}
    return {image["base"]["ref"]: image["base"]["digest"] for image in lock.get("images", {}).values()
            if image.get("base", {}).get("ref")}


def pin_bases(refs: Iterable[str | None], previous: Mapping[str, str | None], resolve: Resolver,
              update: Collection[str] | None = None, update_all: bool = False) -> dict[str, str | None]:
    """The digest for every reference: reused from `previous` unless new or asked to update."""
    wanted = sorted({r for r in refs if r and r not in UNPINNABLE})
    to_resolve = [r for r in wanted if update_all or r not in previous or (update and r in update)]
    pins = {r: previous.get(r) for r in wanted}
    pins.update(_digest_in_ref(r) for r in wanted if "@sha256:" in r)
    to_resolve = [r for r in to_resolve if "@sha256:" not in r]
    if to_resolve:
        with ThreadPoolExecutor(max_workers=min(8, len(to_resolve))) as pool:
            pins.update(zip(to_resolve, pool.map(resolve, to_resolve), strict=True))
    return pins


def _digest_in_ref(ref: str) -> tuple[str, str]:
    return ref, ref.split("@", 1)[1]
