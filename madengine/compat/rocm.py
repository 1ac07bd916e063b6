"""ROCm madengine's command line, translated into a madfile (DESIGN §8: the familiar commands are
front ends over the declarative core). Pure: arguments in, madfile text out.

`madengine run --tags dummy --additional-context '{"gpu_vendor": "AMD"}'` in a MAD package becomes

    version: 1
    package: .
    models: [{select: [dummy]}]
    contexts: {default: {gpu_vendor: AMD, ...}}
    targets: {docker: {backend: docker}}

which is then validated, compiled, locked (in memory), planned and applied like any madfile.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from madengine.errors import UsageError
from madengine.madfile.model import Context

# Keys of --additional-context that are context fields; any other key is a free-form CONTEXT key
# that Dockerfiles' `# CONTEXT {...}` headers test (ROCm's `ctx_test`, ...), so it goes under `match`.
CONTEXT_FIELDS = tuple(name for name in Context.model_fields if name != "match")
# ROCm context keys madengine does not honour: refused, rather than passed on as a CONTEXT match key
# that nothing reads.
UNSUPPORTED = {"docker_gpus": "madengine gives each job free GPUs itself; pass --gpus with the host's GPU count"}
GENERATED_NAME = "madengine-run.yaml"  # where the in-memory madfile says it stands: the package root


@dataclass(frozen=True)
class RocmArgs:
    tags: Sequence[str]
    additional_context: Mapping[str, Any] = field(default_factory=dict)
    backend: str = "docker"
    registry: str | None = None
    gpus: int | None = None
    target: Mapping[str, Any] = field(default_factory=dict)  # more keys of the target (`runner`'s inventory)


def parse_context(text: str | None, file: Path | None) -> dict[str, Any]:
    """--additional-context-file first, then --additional-context on top (ROCm's order)."""
    merged: dict[str, Any] = {}
    if file is not None:
        try:
            merged.update(_json_object(file.read_text(encoding="utf-8"), str(file)))
        except OSError as exc:
            raise UsageError(f"cannot read --additional-context-file {file}: {exc.strerror}") from None
    if text:
        merged.update(_json_object(text, "--additional-context"))
    return merged


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:  # ROCm madengine also takes a Python dict literal
            import ast

            data = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise UsageError(f"{where} is neither JSON nor a Python dict", hint="""e.g. '{"gpu_vendor": "AMD"}'""") \
                from None
    if not isinstance(data, dict):
        raise UsageError(f"{where} must be an object of context keys", hint="""e.g. '{"gpu_vendor": "AMD"}'""")
    return data


def detect_gpu_vendor(dev: Path = Path("/dev")) -> str:
    """What ROCm madengine would detect on this host: AMD with /dev/kfd, NVIDIA with nvidia-smi."""
    if (dev / "kfd").exists():
        return "AMD"
    if shutil.which("nvidia-smi"):
        return "NVIDIA"
    return "NONE"


def context_of(additional: Mapping[str, Any]) -> dict[str, Any]:
    """A madfile context from ROCm's additional context."""
    context: dict[str, Any] = {}
    match: dict[str, Any] = {}
    for key, value in additional.items():
        if key in UNSUPPORTED:
            raise UsageError(f"--additional-context {key!r} is not supported", hint=UNSUPPORTED[key])
        if key in CONTEXT_FIELDS:  # pre/post_scripts: ROCm's [{"path": ..., "args": ...}] is a madfile form too
            context[key] = value
        else:
            match[key] = value
    if "gpu_vendor" not in context:
        context["gpu_vendor"] = detect_gpu_vendor()
    context.setdefault("guest_os", "UBUNTU")
    if match:
        context["match"] = match
    return context


def madfile_text(args: RocmArgs) -> str:
    """The madfile the ROCm-style command means. JSON is YAML: the loader reads it as any madfile."""
    if not args.tags:
        raise UsageError("no --tags given", hint="name models by tag, e.g. --tags dummy (or --tags all)")
    target: dict[str, Any] = {"backend": args.backend}
    if args.gpus is not None:
        target["gpus"] = args.gpus
    target.update(args.target)
    madfile: dict[str, Any] = {
        "version": 1,
        "name": "run",
        "package": ".",
        "models": [{"select": list(args.tags)}],
        "contexts": {"default": context_of(args.additional_context)},
        "targets": {args.backend: target},
    }
    if args.registry:
        madfile["registry"] = args.registry
    return json.dumps(madfile, indent=2) + "\n"


def generated_path(package_dir: Path) -> Path:
    return Path(os.path.normpath(package_dir)) / GENERATED_NAME


def batch_models(path: Path) -> list[str]:
    """ROCm's --batch-manifest: a JSON list of {"model_name": ..., "build_new": bool}; the models to build."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the batch manifest {path}: {exc}") from None
    if not isinstance(entries, list):
        raise UsageError(f"{path} must be a JSON list of {{\"model_name\": ..., \"build_new\": ...}}")
    return [str(e["model_name"]) for e in entries
            if isinstance(e, dict) and e.get("model_name") and e.get("build_new", True)]
