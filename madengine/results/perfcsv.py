"""perf.csv in ROCm madengine's columns (DESIGN §3), from recorded attempts. Pure except `write_perf_csv`.

Column meanings follow ROCm madengine's `create_run_details_dict` (execution/container_runner.py):
`docker_file` is the Dockerfile path, `base_docker` its base image, `docker_sha` the base image's
digest, `docker_image` the image the job ran in, `machine_name` the host (its own name, from the facts
recorded with the attempt), `gpu_architecture` its GPUs' (from the facts too, unless the context sets
MAD_SYSTEM_GPU_ARCHITECTURE), `tags` comma-joined.
What madengine does not know (pipeline, git_commit, build_number, data sizes...) is an empty string.
"""

from __future__ import annotations

import csv
import io
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

from madengine.backends.multinode import LAUNCHER
from madengine.facts.compare import perf_gpu_architecture, perf_machine_name
from madengine.facts.model import HostFacts
from madengine.files import write_atomic
from madengine.state.model import Attempt, ImageRecord, PerfRow, Status

# ROCm madengine's perf.csv header, in its order (DESIGN §3; `_PERF_CSV_HEADER` in ROCm's k8s_results.py).
PERF_CSV_COLUMNS: tuple[str, ...] = (
    "model", "n_gpus", "nnodes", "gpus_per_node", "training_precision", "pipeline", "args", "tags",
    "docker_file", "base_docker", "docker_sha", "docker_image", "git_commit", "machine_name",
    "deployment_type", "launcher", "gpu_architecture", "performance", "metric", "relative_change", "status",
    "build_duration", "test_duration", "dataname", "data_provider_type", "data_size",
    "data_download_duration", "build_number", "additional_docker_run_options",
)

IMAGE_PREFIX = "image:"

# perf.csv knows SUCCESS, FAILURE and SKIPPED only (DESIGN §3): a timeout or an interrupted run is a
# failure there, as it is in ROCm madengine.
_CSV_STATUS = {
    Status.SUCCESS: "SUCCESS",
    Status.FAILURE: "FAILURE",
    Status.TIMEOUT: "FAILURE",
    Status.INTERRUPTED: "FAILURE",
    Status.SKIPPED: "SKIPPED",
}


def is_job(attempt: Attempt) -> bool:
    return not attempt.address.startswith(IMAGE_PREFIX)


def meta_of(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = inputs.get("meta")
    return meta if isinstance(meta, Mapping) else {}


def format_number(value: float | None) -> str:
    """A figure as text: integral values without `.0`, others in Python's shortest round-trip form."""
    if value is None:
        return ""
    value = float(value)  # an int slips in easily (a literal, a JSON number); print it the same way
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _seconds(value: float | None) -> str:
    return "" if value is None else format_number(round(value, 3))


def args_string(args: object) -> str:
    """The job's argument list as one string, quoted so that it splits back into the same list."""
    if isinstance(args, str):
        return args
    if isinstance(args, Sequence):
        return shlex.join(str(a) for a in args)
    return ""


def _series_key(attempt: Attempt, row_model: str, metric: str) -> tuple[str, ...]:
    """What relative_change compares across: the same figure of the same model, params, context and target.

    Context and target are part of it so that a CPU run is never compared with a GPU run.
    """
    inputs = attempt.inputs
    params = inputs.get("params") or {}
    params_key = ",".join(f"{k}={params[k]}" for k in sorted(params)) if isinstance(params, Mapping) else ""
    return (row_model, metric, params_key, str(inputs.get("context", "")), str(inputs.get("target", "")))


def relative_changes(attempts: Iterable[Attempt], history: Iterable[Attempt]) -> dict[tuple[int, int], str]:
    """(attempt id, perf row index) -> change against the previous successful figure of its series.

    A percentage string (`+5.00%`), or nothing when there is no earlier success or it was zero.
    """
    wanted = {a.id for a in attempts}
    previous: dict[tuple[str, ...], float] = {}
    out: dict[tuple[int, int], str] = {}
    for attempt in sorted((a for a in history if is_job(a)), key=attrgetter("chronology")):
        for i, row in enumerate(attempt.perf):
            key = _series_key(attempt, row.model, row.metric)
            if attempt.id in wanted and row.performance is not None:
                before = previous.get(key)
                if before is not None and before != 0:
                    out[(attempt.id, i)] = f"{(row.performance - before) / abs(before) * 100:+.2f}%"
            if attempt.status is Status.SUCCESS and row.status is Status.SUCCESS and row.performance is not None:
                previous[key] = row.performance
    return out


def _build_durations(history: Iterable[Attempt]) -> dict[tuple[str, str], float]:
    """(image address, node hash) and (image address, "") -> duration of its latest successful build."""
    out: dict[tuple[str, str], float] = {}
    for attempt in sorted((a for a in history if not is_job(a)), key=attrgetter("chronology")):
        if attempt.status is Status.SUCCESS and attempt.duration is not None:
            out[(attempt.address, attempt.node_hash)] = attempt.duration
            out[(attempt.address, "")] = attempt.duration
    return out


def _image_fields(image: ImageRecord | None, meta: Mapping[str, Any]) -> dict[str, str]:
    inputs = image.inputs if image is not None else {}
    dockerfile = inputs.get("dockerfile")
    base = inputs.get("base")
    path = dockerfile.get("path") if isinstance(dockerfile, Mapping) else None
    return {
        "docker_file": str(path or meta.get("dockerfile") or ""),
        "base_docker": str((base.get("ref") if isinstance(base, Mapping) else None) or meta.get("base") or ""),
        "docker_sha": str((base.get("digest") if isinstance(base, Mapping) else None) or ""),
        "docker_image": str((image.tag if image is not None else None) or meta.get("image_tag") or ""),
    }


def _data_fields(data: object) -> dict[str, str]:
    if isinstance(data, str):
        return {"dataname": data, "data_provider_type": ""}
    if isinstance(data, Mapping):
        name = data.get("dataname", data.get("name", ""))
        kind = data.get("data_provider_type", data.get("provider_type", data.get("type", "")))
        return {"dataname": str(name or ""), "data_provider_type": str(kind or "")}
    return {"dataname": "", "data_provider_type": ""}


def _facts(attempt: Attempt) -> HostFacts | None:
    if attempt.facts is None:
        return None
    try:
        return HostFacts.from_dict(attempt.facts)
    except ValueError:  # recorded otherwise by another version: as if unknown
        return None


def _gpu_architecture(inputs: Mapping[str, Any], meta: Mapping[str, Any], facts: HostFacts | None) -> str:
    """The context's MAD_SYSTEM_GPU_ARCHITECTURE when it sets one (it wins, as in ROCm madengine), else
    the architecture observed on the host the job ran on."""
    env = inputs.get("env")
    if isinstance(env, Mapping) and env.get("MAD_SYSTEM_GPU_ARCHITECTURE"):
        return str(env["MAD_SYSTEM_GPU_ARCHITECTURE"])
    return perf_gpu_architecture(facts) or str(meta.get("gpu_architecture") or "")


def perf_rows(attempts: Iterable[Attempt], images: Mapping[tuple[str, str], ImageRecord],
              history: Iterable[Attempt] | None = None) -> list[dict[str, str]]:
    """One perf.csv row per performance figure of each finished job attempt (one row if it has none).

    `history` (default: `attempts`) is what relative_change and build_duration look back into: pass
    every recorded attempt when `attempts` is a selection. Image builds and running attempts give no row.
    """
    given = list(attempts)
    selected = [a for a in given if is_job(a) and a.status is not Status.RUNNING]
    past = list(history) if history is not None else given
    changes = relative_changes(selected, past)
    builds = _build_durations(past)
    out: list[dict[str, str]] = []
    for attempt in selected:
        inputs = attempt.inputs
        meta = meta_of(inputs)
        facts = _facts(attempt)
        image_address = inputs.get("image")
        image = images.get((str(image_address), str(inputs.get("target", "")))) if image_address else None
        build_duration = None
        if image is not None:
            # The build of exactly this image; else the latest build of its address (a record whose
            # build attempt was forgotten, or hashed differently).
            build_duration = builds.get((image.address, image.node_hash), builds.get((image.address, "")))
        n_gpus = "" if inputs.get("n_gpus") is None else str(inputs["n_gpus"])  # per node
        nnodes = int(inputs.get("nnodes", 1))
        # ROCm's multi-node rows (slurm.py): n_gpus is the job's total, gpus_per_node each node's (-1, a
        # whole host's GPUs, has no total known here: said per node).
        per_node = inputs.get("n_gpus")
        total = str(nnodes * per_node) if nnodes > 1 and isinstance(per_node, int) and per_node >= 0 else n_gpus
        backend = str(meta.get("backend") or "")
        tags = meta.get("tags") or []
        common = {
            "n_gpus": total,
            "nnodes": str(nnodes),
            "gpus_per_node": n_gpus,
            "training_precision": str(meta.get("training_precision") or ""),
            "pipeline": "",
            "args": args_string(inputs.get("args")),
            "tags": ",".join(str(t) for t in tags) if isinstance(tags, Sequence) and not isinstance(tags, str)
            else str(tags),
            **_image_fields(image, meta),
            "git_commit": "",
            "machine_name": perf_machine_name(facts, attempt.host),
            "deployment_type": backend,
            # ROCm's: torchrun for multi-node runs, docker for a local Docker run
            "launcher": LAUNCHER if nnodes > 1 else "docker" if backend == "docker" else "",
            "gpu_architecture": _gpu_architecture(inputs, meta, facts),
            "build_duration": _seconds(build_duration),
            "test_duration": _seconds(attempt.duration),
            **_data_fields(inputs.get("data")),
            "data_size": "",
            "data_download_duration": "",
            "build_number": "",
            "additional_docker_run_options": str(meta.get("additional_docker_run_options") or ""),
        }
        status = _CSV_STATUS.get(attempt.status, "FAILURE")
        perf: Sequence[PerfRow] = attempt.perf or (
            PerfRow(model=str(inputs.get("model", attempt.address)), performance=None, metric="",
                    status=attempt.status),)
        for i, row in enumerate(perf):
            row_status = status if attempt.status is not Status.SUCCESS else _CSV_STATUS.get(row.status, "FAILURE")
            out.append({
                "model": row.model,
                **common,
                "performance": format_number(row.performance),
                "metric": row.metric,
                "relative_change": changes.get((attempt.id, i), ""),
                "status": row_status,
            })
    return [{c: r[c] for c in PERF_CSV_COLUMNS} for r in out]


def history_rows(attempts: Iterable[Attempt], images: Mapping[tuple[str, str], ImageRecord], model: str,
                 metric: str | None = None, history: Iterable[Attempt] | None = None) -> list[dict[str, str]]:
    """perf.csv rows of `model`'s history (`results --history MODEL --csv`): its finished attempts in apply
    order, each with the rows of that model (all of a job of the model; one multiple_results row's name
    only its own), of `metric` only if given (an attempt that reported nothing, a failure, keeps its row)."""
    ordered = sorted((a for a in attempts if is_job(a) and a.status is not Status.RUNNING),
                     key=lambda a: (a.apply_id, a.chronology))
    rows = perf_rows(ordered, images, history=history if history is not None else ordered)
    owners = [a for a in ordered for _ in range(max(1, len(a.perf)))]  # perf_rows: max(1, len(perf)) each
    return [row for a, row in zip(owners, rows, strict=True)
            if (a.inputs.get("model") == model or row["model"] == model)
            and (metric is None or not a.perf or row["metric"] == metric)]


def write_perf_csv(path: str | os.PathLike[str], rows: Iterable[Mapping[str, str]]) -> int:
    """Write `rows` under the perf.csv header (atomically: a reader never sees half a file); return the count."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PERF_CSV_COLUMNS, lineterminator="\n", restval="",
                            extrasaction="ignore")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    write_atomic(target, buffer.getvalue().encode("utf-8"))
    return count
