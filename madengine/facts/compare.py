"""What the planner and the results ask of facts. Pure.

- `changed(old, new, keys)`: why a job whose last success ran under `old` facts runs again on a
  host that now has `new` ones (`rocm 6.2.0 → 6.3.1`), for the facts named in `rerun_on`.
- `skip_reason(facts, skip_gpu_arch)`: whether a model's models.json `skip_gpu_arch` excludes this
  host, as ROCm madengine decides it.
- `perf_gpu_architecture`, `perf_machine_name`: perf.csv's `gpu_architecture` and `machine_name`.
- `summary(facts)`: the facts in one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, Literal, get_args

from madengine.facts.model import HostFacts

FactKey = Literal["gpu_arch", "driver", "rocm", "cuda", "docker"]
# What `rerun_on:` may name, and what it is when a context or target does not say.
FACT_KEYS: Final[tuple[FactKey, ...]] = get_args(FactKey)
DEFAULT_RERUN_ON: Final[tuple[FactKey, ...]] = ("gpu_arch", "driver", "rocm", "cuda")

NO_GPU = "none"  # how a host without GPUs shows in a change: `gpu_arch gfx90a → none`


def _compared(facts: HostFacts, key: str) -> str | None:
    """The value `changed` compares: None when unknown. A host that says it has no GPU knows its
    gpu_arch: none."""
    if key == "gpu_arch" and facts.gpu_vendor == "NONE":
        return NO_GPU
    value = getattr(facts, key)
    return value if isinstance(value, str) else None


def changed(old: HostFacts, new: HostFacts, keys: Iterable[str] = DEFAULT_RERUN_ON) -> list[str]:
    """The facts among `keys` that differ, each as `<key> <old> → <new>`, in the order of `keys`.

    A fact unknown on either side (its tool was missing, failed or hung that time) is not a change:
    not knowing is no evidence that anything moved, and one hung `rocminfo` must not rerun a whole
    fleet's jobs. A host that reports no GPU where it had one is a change (`gpu_arch gfx90a → none`),
    and so is the reverse. Raises ValueError for a key that is not a fact (`rerun_on` is validated
    against FACT_KEYS before it gets here).
    """
    out: list[str] = []
    seen: set[str] = set()
    for key in keys:
        if key not in FACT_KEYS:
            raise ValueError(f"{key!r} is not a host fact; known: {', '.join(FACT_KEYS)}")
        if key in seen:
            continue
        seen.add(key)
        before, after = _compared(old, key), _compared(new, key)
        if before is not None and after is not None and before != after:
            out.append(f"{key} {before} → {after}")
    return out


def change_note(host: str, changes: Sequence[str]) -> str:
    """`gpu-1: rocm 6.2.0 → 6.3.1, driver 6.7.0 → 6.8.5`, for a plan line's parentheses."""
    return f"{host}: {', '.join(changes)}"


def summary(facts: HostFacts) -> str:
    """One line for `state show` and plan headers:
    `Ubuntu 22.04.4 LTS, kernel 6.8.0-45-generic, x86_64, docker 27.3.1, 8 × AMD gfx942 (AMD Instinct MI300X),
    driver 6.8.5, ROCm 6.2.0`. What is unknown is left out."""
    parts = [p for p in (facts.os, facts.kernel and f"kernel {facts.kernel}", facts.arch,
                         facts.docker and f"docker {facts.docker}") if p]
    if facts.gpu_vendor == "NONE":
        parts.append("no GPU")
    else:
        gpus = " ".join(p for p in (f"{facts.gpu_count} ×" if facts.gpu_count else "", facts.gpu_vendor,
                                    facts.gpu_arch or "") if p)
        parts.append(f"{gpus} ({facts.gpu_product})" if facts.gpu_product else gpus)
    parts += [p for p in (facts.driver and f"driver {facts.driver}", facts.rocm and f"ROCm {facts.rocm}",
                          facts.cuda and f"CUDA {facts.cuda}") if p]
    return ", ".join(parts)


def nvidia_short_name(product: str) -> str:
    """ROCm madengine's reduction of an NVIDIA product to what `skip_gpu_arch` names:
    `NVIDIA A100-SXM4-40GB` -> `A100`, `NVIDIA H100 PCIe` -> `H100` (orchestration/image_filtering.py)."""
    if "NVIDIA" not in product:
        return product
    rest = product[product.index("NVIDIA") + len("NVIDIA "):]
    words = rest.split("-")[0].split()
    return words[0] if words else product


def skip_arch_list(skip_gpu_arch: str | Iterable[str]) -> list[str]:
    """models.json's `skip_gpu_arch` (a comma list; madengine.mad keeps it as a tuple) as names."""
    items = skip_gpu_arch.split(",") if isinstance(skip_gpu_arch, str) else skip_gpu_arch
    return [s for s in (str(item).strip() for item in items) if s]


def skip_reason(facts: HostFacts, skip_gpu_arch: str | Iterable[str]) -> str | None:
    """`gfx908 in skip_gpu_arch` when the model must not run on this host, else None.

    As ROCm madengine (orchestration/image_filtering.py, `filter_images_by_skip_gpu_arch`): each
    comma-separated entry, stripped, is compared exactly (case-sensitive, no prefixes) with the
    host's architecture: an AMD target such as `gfx90a`, or an NVIDIA product reduced as
    `nvidia_short_name` does (`A100`); the full NVIDIA product name and the `sm_80` form match too.
    A host with several architectures is skipped when any of them is listed (a job may land on
    any of its GPUs). A host whose architecture is unknown, or that has no GPU, is not skipped.
    """
    wanted = skip_arch_list(skip_gpu_arch)
    if not wanted or facts.gpu_vendor == "NONE":
        return None
    candidates = list(facts.archs)
    if facts.gpu_vendor == "NVIDIA" and facts.gpu_product:
        for product in facts.gpu_product.split(", "):
            candidates += [product, nvidia_short_name(product)]
    for candidate in candidates:
        if candidate in wanted:
            return f"{candidate} in skip_gpu_arch"
    return None


def perf_gpu_architecture(facts: HostFacts | None) -> str:
    """perf.csv's `gpu_architecture`, as ROCm madengine fills it from MAD_SYSTEM_GPU_ARCHITECTURE:
    the AMD target (`gfx942`; several comma-joined), the NVIDIA product (`nvidia-smi -L`'s
    `NVIDIA A100-SXM4-40GB`, falling back to `sm_80`), or "" without GPUs or facts. A context's
    own MAD_SYSTEM_GPU_ARCHITECTURE, when set, still wins (perfcsv decides that)."""
    if facts is None or facts.gpu_vendor == "NONE":
        return ""
    if facts.gpu_vendor == "NVIDIA":
        return facts.gpu_product or facts.gpu_arch or ""
    return facts.gpu_arch or ""


def perf_machine_name(facts: HostFacts | None, host: str | None = None) -> str:
    """perf.csv's `machine_name`: the host's own name (ROCm madengine writes `hostname`'s output),
    else the name the target gives the host, else ""."""
    if facts is not None and facts.hostname:
        return facts.hostname
    return host or ""
