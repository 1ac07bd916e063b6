"""Observation: what the state store recorded, checked against the world. Read-only I/O.

An image the store says was built is asked for on its target; if it is gone (removed by hand), the
planner rebuilds it. An image that is not here, with a registry set, is looked for in the registry: if
another machine built and pushed it, the planner pulls it instead of building it. Jobs are not
re-observed: a recorded result is the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from madengine.apply.specs import image_spec
from madengine.backends.base import Backend
from madengine.graph.dag import Dag
from madengine.lock.lockfile import Lock
from madengine.state.model import ImageRecord, Observed
from madengine.state.store import StateStore


def observe(store: StateStore, graph: Dag, lock: Lock, backends: Mapping[str, Backend],
            registry: str | None) -> Observed:
    base = store.observed()  # serial, images and latest attempts from one snapshot
    images = base.images
    missing = set()
    for (address, target), record in images.items():
        if address not in graph or record.node_hash != lock["images"][address]["hash"]:
            continue  # not planned, or rebuilt anyway: nothing to ask
        backend = backends.get(target)
        if backend is not None and backend.builds_images and \
                not backend.observe_image(image_spec(address, lock, registry), record.image_id):
            missing.add((address, target))
    in_registry = {}
    for address, data in graph.nodes.items():
        if not registry or data["kind"] != "image":
            continue
        node_hash = lock["images"][address]["hash"]
        absent = [t for t in data["targets"]
                  if (address, t) in missing or not _built(images.get((address, t)), node_hash)]
        backend = backends.get(absent[0]) if absent else None  # asked only about images not here
        if backend is not None and backend.builds_images:
            digest = backend.observe_registry(image_spec(address, lock, registry))
            if digest:
                in_registry[address] = digest
    return dataclasses.replace(base, missing_images=frozenset(missing), in_registry=in_registry)


def _built(record: ImageRecord | None, node_hash: str) -> bool:
    return record is not None and record.node_hash == node_hash
