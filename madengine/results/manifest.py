"""build_manifest.json as ROCm madengine writes it (DESIGN §3), from realized images. Pure except the writer.

ROCm's shape (`execution/docker_builder.py: export_build_manifest`, `orchestration/build_orchestrator.py:
_save_build_summary`):

    {"built_images": {<image name>: {model, docker_image, dockerfile, base_docker, docker_sha,
                                     build_duration, build_command, log_file, gpu_vendor,
                                     [gpu_architecture], [registry], [registry_image]}},
     "built_models": {<image name>: <the model's models.json entry, args including tag args>},
     "context": {docker_env_vars, docker_mounts, docker_build_arg, gpu_vendor, docker_gpus},
     "credentials_required": [<cred names of the built models>],
     "summary": {successful_builds: [<build info>...], failed_builds: [{model, error}...],
                 total_build_time, successful_pushes: [], failed_pushes: []}}

ROCm builds one image per model and Dockerfile, named `ci-<model>_<dockerfile stem>`, and its run phase
pairs `built_images[k]` with `built_models[k]`. madengine shares one content-addressed image between
models, so here a key is still one per (model, params, image) in ROCm's naming, and `docker_image`
(or `registry_image`) names the real, shared image: consumers must run that, not the key. Each entry
also carries a `madengine` object (addresses, node hash, digest) that ROCm readers ignore.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from operator import attrgetter
from pathlib import Path
from typing import Any

from madengine.results.perfcsv import IMAGE_PREFIX, args_string, is_job, meta_of
from madengine.state.model import Attempt, ImageRecord, Status

# Variables that differ per job, so they are not part of a shared run context.
_PER_JOB_ENV = frozenset({"MAD_MODEL_NAME", "MAD_RUNTIME_NGPUS"})
_UNSAFE_IN_NAME = re.compile(r"[^a-z0-9_.-]+")


def image_stem(address: str) -> str:
    """`image:dummy.ubuntu.amd@mi300x` -> `dummy.ubuntu.amd`."""
    return address.removeprefix(IMAGE_PREFIX).rsplit("@", 1)[0]


def image_key(model: str, params: Mapping[str, Any], stem: str) -> str:
    """ROCm's image name `ci-<model with / as _, lower case>_<dockerfile stem>`, params folded into the model part."""
    name = model.replace("/", "_").lower()
    if params:
        name += "_" + "_".join(f"{k}-{params[k]}" for k in sorted(params))
    return "ci-" + _UNSAFE_IN_NAME.sub("_", name.lower()) + "_" + stem


def registry_image(tag: str, registry: str) -> str:
    """Where a pushed image lives, named as ROCm's `_determine_registry_image_name` names it."""
    if registry.lower() in ("docker.io", "dockerhub") or tag.startswith(registry.rstrip("/") + "/"):
        return tag
    return f"{registry.rstrip('/')}/{tag}"


def _latest(attempts: Iterable[Attempt]) -> dict[str, Attempt]:
    latest: dict[str, Attempt] = {}
    for attempt in sorted(attempts, key=attrgetter("chronology")):
        if attempt.status is not Status.RUNNING:
            latest[attempt.address] = attempt
    return latest


def _model_info(address: str, entry: Mapping[str, Any], image_address: str) -> dict[str, Any]:
    """The job as a models.json entry (ROCm's `built_models` values), plus where it came from."""
    meta = meta_of(entry)
    script = entry.get("script")
    params = entry.get("params") or {}
    timeout = entry.get("timeout")
    return {
        "name": str(entry.get("model", "")),
        "dockerfile": str(meta.get("dockerfile") or ""),
        "scripts": str(script.get("path", "")) if isinstance(script, Mapping) else "",
        "n_gpus": str(entry.get("n_gpus", "")),
        "owner": str(meta.get("owner") or ""),
        "training_precision": str(meta.get("training_precision") or ""),
        "tags": [str(t) for t in meta.get("tags") or []],
        "args": args_string(entry.get("args")),
        "multiple_results": str(entry.get("multiple_results") or ""),
        "timeout": timeout if isinstance(timeout, int) else -1,
        "data": _data_name(entry.get("data")),
        "cred": str(meta.get("cred") or entry.get("cred") or ""),
        "additional_docker_run_options": str(meta.get("additional_docker_run_options") or ""),
        "madengine": {"address": address, "image": image_address, "context": entry.get("context"),
                      "target": entry.get("target"), "params": dict(params) if isinstance(params, Mapping) else {}},
    }


def _build_info(model: str, image: ImageRecord, build: Attempt | None, gpu_vendor: str,
                registry: str | None) -> dict[str, Any]:
    inputs = image.inputs
    dockerfile = inputs.get("dockerfile")
    base = inputs.get("base")
    build_args = inputs.get("build_args")
    info: dict[str, Any] = {
        "model": model,
        "docker_image": image.tag,
        "dockerfile": str(dockerfile.get("path", "")) if isinstance(dockerfile, Mapping) else "",
        "base_docker": str(base.get("ref") or "") if isinstance(base, Mapping) else "",
        "docker_sha": str(base.get("digest") or "") if isinstance(base, Mapping) else "",
        "build_duration": round(build.duration, 3) if build is not None and build.duration is not None else 0.0,
        "build_command": "",  # built through the Docker API, not a command line
        "log_file": (build.log_path or "") if build is not None else "",
        "gpu_vendor": gpu_vendor,
    }
    if isinstance(build_args, Mapping) and build_args.get("MAD_SYSTEM_GPU_ARCHITECTURE"):
        info["gpu_architecture"] = str(build_args["MAD_SYSTEM_GPU_ARCHITECTURE"])
    if registry:
        info["registry"] = registry
        if image.digest:  # pushed: ROCm records where it went
            info["registry_image"] = registry_image(image.tag, registry)
    info["madengine"] = {"address": image.address, "target": image.target, "node_hash": image.node_hash,
                         "image_id": image.image_id, "digest": image.digest, "built_at": image.built_at}
    return info


def _context_of(entry: Mapping[str, Any], image: ImageRecord | None) -> dict[str, Any]:
    raw_env = entry.get("env")
    env: Mapping[str, Any] = raw_env if isinstance(raw_env, Mapping) else {}
    build_args = image.inputs.get("build_args") if image is not None else None
    return {
        "docker_env_vars": {k: v for k, v in env.items() if k not in _PER_JOB_ENV},
        "docker_mounts": {},
        "docker_build_arg": dict(build_args) if isinstance(build_args, Mapping) else {},
        "gpu_vendor": str(meta_of(entry).get("gpu_vendor") or env.get("MAD_GPU_VENDOR") or ""),
        "docker_gpus": "",
    }


def _common(contexts: list[dict[str, Any]]) -> dict[str, Any]:
    """ROCm has one context per build; with several, keep what they agree on."""
    if not contexts:
        return {"docker_env_vars": {}, "docker_mounts": {}, "docker_build_arg": {}, "gpu_vendor": "",
                "docker_gpus": ""}
    first, rest = contexts[0], contexts[1:]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if all(c[key].get(k) == v for c in rest)}
        else:
            out[key] = value if all(c[key] == value for c in rest) else ""
    return out


def build_manifest(images: Mapping[tuple[str, str], ImageRecord], attempts: Iterable[Attempt],
                   registry: str | None, *, jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """build_manifest.json for the realized `images` and the jobs that use them.

    The jobs are exactly `jobs` (lock "jobs" entries with their `meta`: the command's own), never
    mixed with history: an earlier run in the same directory (another context under the same address,
    other models) must not leak into the manifest of this command. The latest image build attempts in
    `attempts` give durations, log files and failures.
    """
    latest = _latest(attempts)
    entries = {address: dict(entry) for address, entry in jobs.items()}
    built_images: dict[str, dict[str, Any]] = {}
    built_models: dict[str, dict[str, Any]] = {}
    contexts: dict[str, dict[str, Any]] = {}
    models_of_image: dict[str, list[str]] = {}
    image_hashes: set[str] = set()  # of the given jobs' images: a failed build of other inputs is not theirs
    for address in sorted(entries):
        entry = entries[address]
        image_address = entry.get("image")
        if not image_address:
            continue  # a local-backend job: no image
        model = str(entry.get("model", ""))
        models_of_image.setdefault(str(image_address), []).append(model)
        if entry.get("image_hash"):
            image_hashes.add(str(entry["image_hash"]))
        image = images.get((str(image_address), str(entry.get("target", ""))))
        if image is not None and entry.get("image_hash") not in (None, image.node_hash):
            image = None  # an earlier build of that address, from other inputs: not this job's image
        contexts.setdefault(str(entry.get("context", "")), _context_of(entry, image))
        if image is None:
            continue
        params = entry.get("params") or {}
        key = image_key(model, params if isinstance(params, Mapping) else {}, image_stem(str(image_address)))
        if key in built_images:
            continue  # the same model and image on another target or repeat
        gpu_vendor = str(meta_of(entry).get("gpu_vendor") or "")
        built_images[key] = _build_info(model, image, latest.get(image.address), gpu_vendor, registry)
        built_models[key] = _model_info(address, entry, str(image_address))

    failed_builds = []
    for address, attempt in sorted(latest.items()):
        if is_job(attempt) or attempt.status is Status.SUCCESS:
            continue
        if address not in models_of_image or attempt.node_hash not in image_hashes:
            continue  # an image of other jobs, or of other inputs: not this command's
        for model in sorted(set(models_of_image.get(address, []))) or [address]:
            failed_builds.append({"model": model, "error": attempt.message or attempt.status.value, "image": address})

    credentials = sorted({m["cred"] for m in built_models.values() if m["cred"]})
    # Each image is built once, however many models use it: count its time once.
    durations = {(i["madengine"]["address"], i["madengine"]["node_hash"]): i["build_duration"]
                 for i in built_images.values()}
    manifest: dict[str, Any] = {
        "built_images": built_images,
        "built_models": built_models,
        "context": _common([contexts[name] for name in sorted(contexts)]),
        "credentials_required": credentials,
        "summary": {
            "successful_builds": [dict(info) for info in built_images.values()],
            "failed_builds": failed_builds,
            "total_build_time": round(sum(durations.values()), 3),
            "successful_pushes": [],
            "failed_pushes": [],
        },
    }
    if len(contexts) > 1:
        manifest["contexts"] = {name: contexts[name] for name in sorted(contexts)}
    return manifest


def write_build_manifest(path: str | os.PathLike[str], manifest: Mapping[str, Any]) -> None:
    """Write it as ROCm does (JSON, 2-space indent), with a trailing newline."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def read_build_manifest(path: Path) -> tuple[list[str], str | None]:
    """What `run --manifest-file` takes from a build manifest: the models it lists, and the registry its
    images were pushed to (if any)."""
    from madengine.errors import UsageError

    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        built_models, built_images = manifest.get("built_models", {}), manifest.get("built_images", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise UsageError(f"cannot read the build manifest {path}: {exc}") from None
    models = sorted({m.get("name", k) for k, m in built_models.items() if isinstance(m, dict)})
    if not models:
        raise UsageError(f"{path} lists no built models", hint="pass --tags")
    registries = sorted({str(image["registry"]) for image in built_images.values()
                         if isinstance(image, dict) and image.get("registry")})
    if len(registries) > 1:
        raise UsageError(f"{path} names several registries: {', '.join(registries)}",
                         hint="build into one registry, or run with --tags")
    return models, registries[0] if registries else None


def _data_name(data: object) -> str:
    """The models.json `data` value: the lock keeps it as `{"name": ..., ...}`."""
    if isinstance(data, Mapping):
        return str(data.get("name") or "")
    return str(data or "")
