"""Typed lock entries: what plan and apply read of the lock, instead of string-keyed dicts.

The lock stays plain JSON data (its bytes are its identity: hashed, diffed, written in a fixed order);
these are immutable, typed copies of one entry each, made on demand (`image_entries(lock)[address]`), so a
no-op plan pays for the entries it reads and no more. Nested parts (a script's path and hashes, a
base's ref and digest) stay the lock's own mappings: they are compared and recorded as they are.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

if TYPE_CHECKING:  # this module is imported by the plan's model: it stays light
    from madengine.lock.lockfile import Lock


class NodeKind(enum.StrEnum):
    """The kinds of node of the graph (and of a plan's changes)."""

    IMAGE = "image"
    PUSH = "push"
    JOB = "job"


class ImageEntry(NamedTuple):
    """One `images` entry of the lock (DESIGN §4). Immutable, as every entry here: a NamedTuple, made
    from the lock's mapping in one step (a frozen dataclass costs ~8x as much to make, paid per job
    on every no-op plan)."""

    base: Mapping[str, str | None]  # {"ref", "digest"}
    build_args: Mapping[str, str]
    context: Mapping[str, str | None]  # {"path", "sha256"}: the build context
    dockerfile: Mapping[str, str | None]  # {"path", "sha256"}
    hash: str
    tag: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageEntry:
        return tuple.__new__(cls, _image_values(data))

    def to_json(self) -> dict[str, Any]:
        """The entry as the lock holds it (what is recorded with a build, to explain a later rebuild)."""
        return dict(zip(self._fields, self, strict=True))

    @property
    def dockerfile_path(self) -> str:
        return str(self.dockerfile["path"])

    @property
    def context_path(self) -> str:
        return str(self.context["path"])


class JobEntry(NamedTuple):
    """One `jobs` entry of the lock (DESIGN §4)."""

    model: str
    params: Mapping[str, str | None]
    context: str
    context_sha256: str
    target: str
    target_sha256: str
    repeat: int
    image: str | None
    image_hash: str | None
    script: Mapping[str, str | None]  # {"path", "sha256", "dir_sha256"}
    args: list[str]
    env: Mapping[str, str]
    n_gpus: int
    timeout: int
    multiple_results: str | None
    data: Mapping[str, Any] | None
    tools: Mapping[str, Any] | None
    depends_on: list[str]
    hash: str
    nnodes: int  # written only when not 1

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobEntry:
        return tuple.__new__(cls, (*_job_values(data), data.get("nnodes", 1)))

    def to_json(self) -> dict[str, Any]:
        out = dict(zip(self._fields, self, strict=True))
        if self.nnodes == 1:
            del out["nnodes"]
        return out

    @property
    def script_path(self) -> str:
        return str(self.script["path"])


_image_values = operator.itemgetter(*ImageEntry._fields)
_job_values = operator.itemgetter(*JobEntry._fields[:-1])  # all but the optional `nnodes`

E = TypeVar("E", ImageEntry, JobEntry)


class Entries(Mapping[str, E], Generic[E]):
    """A lock section as typed entries, each made on first use and kept."""

    __slots__ = ("_made", "_make", "_raw")

    def __init__(self, raw: Mapping[str, Mapping[str, Any]], make: Any) -> None:
        self._raw = raw
        self._make = make
        self._made: dict[str, E] = {}

    def __getitem__(self, address: str) -> E:
        entry = self._made.get(address)
        if entry is None:
            entry = self._made[address] = self._make(self._raw[address])
        return entry

    def __contains__(self, address: object) -> bool:
        return address in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


@dataclass(frozen=True)
class LockEntries:
    """The typed view of one lock: `images` and `jobs` by address."""

    images: Entries[ImageEntry]
    jobs: Entries[JobEntry]

    @classmethod
    def of(cls, lock: Lock) -> LockEntries:
        return cls(images=Entries(lock["images"], ImageEntry.from_json),
                   jobs=Entries(lock["jobs"], JobEntry.from_json))
