"""`madengine.lock`: content hashes of every node, serialized in a fixed order (DESIGN §4).

The lock is plain JSON data keyed by node address so that a pull-request diff shows which nodes
changed. Node hashes are Merkle hashes: a job's hash covers its image's hash, so a changed Dockerfile
changes that image and the jobs that use it, and nothing else.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from madengine import shape
from madengine.compile.ir import ImageNode, JobNode, Project, ScriptCall
from madengine.errors import ConfigError, Diagnostic
from madengine.files import decode_utf8, write_atomic
from madengine.lock.hashing import FileHasher, hash_value
from madengine.madfile.model import job_config
from madengine.shape import ListOf, MapOf, Opt

LOCK_VERSION = 1
TAG_LENGTH = 12

# Files of a MAD package that define its models; their tree hash is the lock's `package.sha256`.
# Dockerfiles, build contexts and scripts are hashed per node instead.
PACKAGE_DEFINITION_GLOBS = ("models.json", "scripts/*/models.json", "scripts/*/get_models_json.py")

Lock = dict[str, Any]

# MAD keeps every Dockerfile in one build context (`docker/`). Each Dockerfile is hashed as its own
# image's recipe, not as context of the others, so that editing one rebuilds one image. (An image that
# `COPY`s the whole context would miss a sibling Dockerfile's edit: a trade made knowingly.)
DOCKERFILES_IN_CONTEXT = ("**/*.Dockerfile", "**/Dockerfile", "**/.dockerignore")


def build_lock(project: Project, resolved_bases: Mapping[str, str] | None = None) -> Lock:
    """The lock of a compiled project. `resolved_bases` maps base image refs to pinned digests."""
    hasher = FileHasher(Path(project.root))
    bases = resolved_bases or {}
    images = {addr: _image_entry(node, hasher, bases) for addr, node in project.images.items()}
    definitions = {
        # Placement keys (hosts, inventory...) are not hashed: see madfile.model.HASH_EXCLUDED.
        **{("context", n): hash_value(job_config(c)) for n, c in project.contexts.items()},
        **{("target", n): hash_value(job_config(t)) for n, t in project.targets.items()},
    }
    shared: dict[Any, Any] = {}
    jobs = {addr: _job_entry(node, definitions, hasher, images, shared) for addr, node in project.jobs.items()}
    lock: Lock = {
        "version": LOCK_VERSION,
        "madfile": {"path": project.madfile_path, "sha256": hasher.file(project.madfile_path)},
        "package": _package_entry(project, hasher),
        "images": images,
        "jobs": jobs,
    }
    return lock


def _image_entry(node: ImageNode, hasher: FileHasher, bases: Mapping[str, str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "base": {"ref": node.base, "digest": bases.get(node.base) if node.base else None},
        "build_args": dict(node.build_args),
        "context": {"path": node.build_context,
                    "sha256": hasher.tree(node.build_context, ignore=DOCKERFILES_IN_CONTEXT)},
        "dockerfile": {"path": node.dockerfile, "sha256": hasher.file(node.dockerfile)},
    }
    # The image's identity is its content: the context name is not part of it, so two contexts
    # with the same build args share one tag and one build.
    node_hash = hash_value(inputs)
    return {**inputs, "hash": node_hash, "tag": image_tag(node.name, node_hash)}


def _job_entry(node: JobNode, definitions: Mapping[tuple[str, str], str], hasher: FileHasher,
               images: Mapping[str, Mapping[str, Any]], shared: dict[Any, Any]) -> dict[str, Any]:
    """A job's lock entry. Its parts that many jobs have in common (the script, env, data and tools
    of one model in one context) are built once and shared: a lock of 100,000 jobs is built in
    memory before it is written, and no one changes an entry once built."""
    key = ("job", node.script, id(node.env), node.data, node.data_provider, node.data_mounts, node.tools,
           node.pre_scripts, node.post_scripts, node.cmd_prefix)
    common = shared.get(key)
    if common is None or common[0] is not node.env:  # the id of an env is its own only while it lives
        common = shared[key] = (node.env, _script_entry(node.script, hasher), dict(node.env),
                                _data_entry(node, hasher), _tools_entry(node, hasher))
    _, script, env, data, tools = common
    inputs: dict[str, Any] = {
        "model": node.model,
        "params": {k: v for k, v in node.params},
        "context": node.context,
        "context_sha256": definitions["context", node.context],
        "target": node.target,
        "target_sha256": definitions["target", node.target],
        "repeat": node.repeat,
        "image": node.image,
        "image_hash": images[node.image]["hash"] if node.image else None,
        "script": script,
        "args": list(node.args),
        "env": env,
        "n_gpus": node.n_gpus,
        "timeout": node.timeout,
        "multiple_results": node.multiple_results or None,
        "data": data,
        "tools": tools,
        "depends_on": [node.image] if node.image else [],
    }
    if node.nnodes != 1:  # only then: the locks (and hashes) of single-node jobs stay as they were
        inputs["nnodes"] = node.nnodes
    return {**inputs, "hash": hash_value(inputs)}


def _script_entry(path: str, hasher: FileHasher) -> dict[str, Any]:
    script_dir = posixpath.dirname(path)
    return {
        "path": path,
        "sha256": hasher.file(path),
        # MAD copies the script's whole directory into the run directory.
        "dir_sha256": hasher.tree(script_dir) if script_dir not in ("", ".") else None,
    }


def _tools_entry(node: JobNode, hasher: FileHasher) -> dict[str, Any] | None:
    """What the context's tools and scripts add to a run: each script's content is hashed."""
    if not (node.tools or node.pre_scripts or node.post_scripts or node.cmd_prefix):
        return None

    def calls(items: tuple[ScriptCall, ...]) -> list[dict[str, Any]]:
        return [{"path": c.path, "args": list(c.args), "sha256": hasher.file(c.path)} for c in items]

    return {"names": list(node.tools), "pre_scripts": calls(node.pre_scripts),
            "post_scripts": calls(node.post_scripts), "cmd": list(node.cmd_prefix)}


def _data_entry(node: JobNode, hasher: FileHasher) -> dict[str, Any] | None:
    """The model's data: mounts inside the project are hashed as trees (data outside is not)."""
    if not node.data:
        return None
    return {"name": node.data, "provider_type": node.data_provider or None,
            "mounts": [{"host_path": m.host_path, "container_path": m.container_path, "readwrite": m.readwrite,
                        "sha256": hasher.tree(m.host_path) if m.in_project else None} for m in node.data_mounts]}


def _package_entry(project: Project, hasher: FileHasher) -> dict[str, Any] | None:
    if project.package_path is None:
        return None
    root = Path(project.root) / project.package_path
    files = sorted({
        p.relative_to(root).as_posix() for pattern in PACKAGE_DEFINITION_GLOBS for p in root.glob(pattern)
    })
    prefix = "" if project.package_path in ("", ".") else project.package_path + "/"
    listing = {f: hasher.file(prefix + f) for f in files}
    return {"path": project.package_path, "sha256": hash_value(listing)}


def image_tag(name: str, node_hash: str) -> str:
    """`madengine/<name>:<hash12>`, with the name made a valid Docker repository component."""
    repo = "".join(c if c.isalnum() or c in "._-" else "-" for c in name.lower()).strip("._-") or "image"
    return f"madengine/{repo}:{node_hash.removeprefix('sha256:')[:TAG_LENGTH]}"


# --- file form ------------------------------------------------------------------------------------


def render(lock: Lock) -> str:
    """The lockfile text: sorted keys, 2-space indent, one trailing newline.

    The same bytes as `json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False)`, ten times faster.
    """
    return render_bytes(lock).decode("utf-8")


def render_bytes(lock: Lock) -> bytes:
    """`render(lock)` encoded as UTF-8, without the round trip through str (a lock of 100,000 jobs is
    ~90 MB: each copy counts)."""
    return orjson.dumps(lock, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


def read_lock(path: Path) -> Lock | None:
    """The lock at `path`, None if there is none; a corrupt lock is a config error."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    return parse_lock(text, path)


def parse_lock(text: bytes, path: Path, *, trusted: bool = False) -> Lock:
    """The lock in `text`, its every field checked (a lock may have been edited, truncated or replaced).

    `trusted`: these bytes are known to be a lock this code wrote (the freshness record matched their
    digest), so the checks are skipped: they cost as much as the parse on the no-op plan's path."""
    if trusted:
        data: Lock = orjson.loads(text)
        return data
    hint = "delete it and run `madengine lock`"
    decoded = decode_utf8(text, str(path), hint=hint)
    try:
        data = json.loads(decoded)  # not orjson: json's messages say what is wrong
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path.name} is not valid JSON: {exc.msg}", file=str(path), line=exc.lineno,
                          column=exc.colno, hint=hint) from None
    except RecursionError:
        raise ConfigError(f"{path.name} is nested too deeply to be a lock", file=str(path), hint=hint) from None
    except ValueError:  # a number of thousands of digits, which Python refuses to convert
        raise ConfigError(f"{path.name} holds a number too long to read: not a lock madengine wrote",
                          file=str(path), hint=hint) from None
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        raise ConfigError(f"{path.name} is not a version {LOCK_VERSION} madengine lock", file=str(path),
                          hint=hint)
    found = shape.problems(data, _LOCK_SHAPE) or _dangling(data)
    if found:
        raise ConfigError.many(Diagnostic(file=str(path), line=None, column=None, key_path=key,
                                          message=f"{message} (not a lock madengine wrote)", hint=hint)
                               for key, message in found)
    return data


_HASHED_PATH = {"path": str, "sha256": Opt(str)}
_SCRIPT_CALL = {"path": str, "args": ListOf(str), "sha256": Opt(str)}
_LOCK_SHAPE = {
    "version": int,
    "madfile": _HASHED_PATH,
    "package": Opt(_HASHED_PATH),
    "images": MapOf({
        "base": {"ref": Opt(str), "digest": Opt(str)},
        "build_args": MapOf(str),
        "context": _HASHED_PATH,
        "dockerfile": _HASHED_PATH,
        "hash": str,
        "tag": str,
    }),
    "jobs": MapOf({
        "model": str,
        "params": MapOf(Opt(str)),
        "context": str,
        "context_sha256": str,
        "target": str,
        "target_sha256": str,
        "repeat": int,
        "image": Opt(str),
        "image_hash": Opt(str),
        "script": {"path": str, "sha256": Opt(str), "dir_sha256": Opt(str)},
        "args": ListOf(str),
        "env": MapOf(str),
        "n_gpus": int,
        "timeout": int,
        "multiple_results": Opt(str),
        "data": Opt({"name": str, "provider_type": Opt(str),
                     "mounts": ListOf({"host_path": str, "container_path": str, "readwrite": bool,
                                       "sha256": Opt(str)})}),
        "tools": Opt({"names": ListOf(str), "pre_scripts": ListOf(_SCRIPT_CALL),
                      "post_scripts": ListOf(_SCRIPT_CALL), "cmd": ListOf(str)}),
        "depends_on": ListOf(str),
        "nnodes?": int,
        "hash": str,
    }),
}


def _dangling(lock: Lock) -> list[tuple[str, str]]:
    """Jobs naming an image the lock does not have (the graph is built from these names)."""
    out = []
    for addr, job in lock["jobs"].items():
        for i, dep in enumerate(job["depends_on"]):
            if dep not in lock["images"]:
                out.append((f"jobs[{addr!r}].depends_on[{i}]", f"no image {dep!r} in the lock"))
        if job["image"] is not None and job["image"] not in lock["images"]:
            out.append((f"jobs[{addr!r}].image", f"no image {job['image']!r} in the lock"))
    return out[:shape.LIMIT]


def write_lock(path: Path, lock: Lock) -> bool:
    """Write the lock atomically; return False when the file already held exactly these bytes."""
    return write_atomic(path, render_bytes(lock))


# --- comparison -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockDiff:
    """What differs between an old lock and a new one, by node address."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    top_level: tuple[str, ...]  # `madfile`, `package`, `version` when those changed

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.top_level)

    def summary(self, limit: int = 5) -> str:
        parts = []
        for verb, items in (("changed", self.changed), ("added", self.added), ("removed", self.removed)):
            if items:
                more = f", … (+{len(items) - limit})" if len(items) > limit else ""
                shown = ", ".join(items[:limit]) + more
                parts.append(f"{len(items)} {verb} ({shown})")
        if self.top_level and not parts:
            parts.append(f"{', '.join(self.top_level)} changed")
        return "; ".join(parts)


def diff_locks(old: Lock | None, new: Lock) -> LockDiff:
    old = old or {}
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []
    for section in ("images", "jobs"):
        before: Mapping[str, Any] = old.get(section) or {}
        after: Mapping[str, Any] = new.get(section) or {}
        added += [a for a in after if a not in before]
        removed += [a for a in before if a not in after]
        changed += [a for a in after if a in before and before[a] != after[a]]
    top = tuple(k for k in ("version", "madfile", "package") if old.get(k) != new.get(k))
    return LockDiff(tuple(added), tuple(removed), tuple(changed), top)


def missing_inputs(lock: Lock, madfile_display: str) -> list[Diagnostic]:
    """Files a node needs that do not exist: a Dockerfile, a build context, a script."""
    out = []
    for addr, image in lock["images"].items():
        if image["dockerfile"]["sha256"] is None:
            out.append(_missing(madfile_display, addr, "Dockerfile", image["dockerfile"]["path"]))
        if image["context"]["sha256"] is None:
            out.append(_missing(madfile_display, addr, "build context", image["context"]["path"]))
    seen: set[str] = set()
    for addr, job in lock["jobs"].items():
        path = job["script"]["path"]
        if job["script"]["sha256"] is None and path not in seen:
            seen.add(path)
            out.append(_missing(madfile_display, addr, "script", path))
    return out


def _missing(madfile_display: str, addr: str, what: str, path: str) -> Diagnostic:
    return Diagnostic(file=madfile_display, line=None, column=None,
                      message=f"{addr}: {what} {path!r} does not exist or cannot be read",
                      hint="paths are relative to the madfile (or, for packaged models, the package)")
