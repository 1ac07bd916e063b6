"""What a host is, as far as a benchmark result depends on it: `HostFacts`.

Observed read-only at plan time (`madengine.facts.probe`), recorded with every attempt, compared
with the facts of a job's last success (`madengine.facts.compare`). `None` means "not known": the
tool that tells was missing, failed or hung. A machine without GPUs says so: `gpu_vendor` "NONE"
and `gpu_count` 0.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

GpuVendor = Literal["AMD", "NVIDIA", "NONE"]
GPU_VENDORS: Final[tuple[str, ...]] = ("AMD", "NVIDIA", "NONE")


@dataclass(frozen=True)
class HostFacts:
    """One host's facts.

    `gpu_arch` is every distinct architecture of the host's GPUs, sorted and comma-joined
    ("gfx90a", or "gfx908,gfx90a" on a mixed host; `archs` splits it): one string, because that
    is what ROCm madengine's `MAD_SYSTEM_GPU_ARCHITECTURE` and perf.csv's `gpu_architecture`
    hold, it compares and prints as one value (`gpu_arch gfx90a → gfx942`), and the JSON stays
    flat. AMD archs are LLVM targets without features (`gfx90a`, not `gfx90a:sramecc+:xnack-`);
    NVIDIA ones are compute capabilities as `sm_80` (the product, `NVIDIA A100-SXM4-40GB`, is
    in `gpu_product`).
    """

    hostname: str | None = None  # `uname -n`, what ROCm madengine's `hostname` gives
    os: str | None = None  # PRETTY_NAME of /etc/os-release
    kernel: str | None = None  # uname -r
    arch: str | None = None  # uname -m
    docker: str | None = None  # the Docker server's version; None without a reachable daemon
    gpu_vendor: GpuVendor = "NONE"
    gpu_count: int = 0
    gpu_arch: str | None = None
    gpu_product: str | None = None  # informational: distinct product names, comma-joined
    driver: str | None = None  # amdgpu or nvidia kernel driver version
    rocm: str | None = None  # ROCm userspace version (/opt/rocm/.info/version, amd-smi)
    cuda: str | None = None  # CUDA version (nvcc, else the driver's, from nvidia-smi)

    def __post_init__(self) -> None:
        if self.gpu_vendor not in GPU_VENDORS:
            raise ValueError(f"gpu_vendor must be one of {', '.join(GPU_VENDORS)}, not {self.gpu_vendor!r}")
        if type(self.gpu_count) is not int or self.gpu_count < 0:
            raise ValueError(f"gpu_count must be a non-negative integer, not {self.gpu_count!r}")

    @property
    def archs(self) -> tuple[str, ...]:
        """The distinct GPU architectures, sorted (empty when unknown or without GPUs)."""
        return tuple(a for a in (self.gpu_arch or "").split(",") if a)

    @property
    def has_gpus(self) -> bool:
        return self.gpu_vendor != "NONE" and self.gpu_count > 0

    def to_dict(self) -> dict[str, Any]:
        """The facts as a JSON-ready dict, keys in field order (a stable order for `state show`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces, UTF-8 kept; equal facts give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostFacts:
        """Facts from `to_dict`'s form. Keys this version does not know are ignored (facts recorded
        by a newer madengine), missing ones are unknown (an older one); a value of the wrong type
        raises ValueError."""
        if not isinstance(data, Mapping):
            raise ValueError(f"host facts must be a JSON object, not {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name == "gpu_count":
                if type(value) is not int:
                    raise ValueError(f"host facts: gpu_count must be an integer, not {value!r}")
            elif f.name == "gpu_vendor":
                if value not in GPU_VENDORS:
                    raise ValueError(f"host facts: gpu_vendor must be one of {', '.join(GPU_VENDORS)}, "
                                     f"not {value!r}")
            elif value is not None and not isinstance(value, str):
                raise ValueError(f"host facts: {f.name} must be a string or null, not {value!r}")
            kwargs[f.name] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> HostFacts:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"host facts are not JSON: {e}") from None
        return cls.from_dict(data)


FACT_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in dataclasses.fields(HostFacts))
