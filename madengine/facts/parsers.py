"""The probe's output -> `HostFacts`. Pure; tolerant of tool noise and of any bytes.

The probe (probe.sh) prints its own `key=value` lines and every line a tool printed as
`<tool>=<line>`, then `<tool>.rc=<exit status>`. A tool's lines count only when it exited 0: a
tool that failed, hung (killed by `timeout`) or printed garbage leaves its facts unknown, never
wrong. Each tool has its own parser here, usable on that tool's raw output.

Which source wins (ROCm madengine's sources, fastest and most exact first):
- GPU vendor: NVIDIA when nvidia-smi lists GPUs or the nvidia driver has some
  (/proc/driver/nvidia/gpus), as ROCm madengine checks NVIDIA first; else AMD when rocminfo, the
  KFD topology, amd-smi or rocm-smi show a GPU, or /dev/kfd exists (then the count may be 0:
  the driver is there, the GPUs could not be enumerated); else NONE.
- AMD arch: rocminfo (`rocminfo | grep gfx`, as ROCm madengine), else the KFD topology's
  gfx_target_version, else amd-smi's TARGET_GRAPHICS_VERSION, else rocm-smi's GFX Version.
- AMD driver: /sys/module/amdgpu/version, else amd-smi static's DRIVER VERSION, else the amdgpu
  version of `amd-smi version` (recent releases), else rocm-smi's.
- ROCm: ${ROCM_PATH:-/opt/rocm}/.info/version (without its build suffix), else `amd-smi version`.
- CUDA: `nvcc --version`, else the driver's CUDA from nvidia-smi's header (ROCm madengine's order).
"""

from __future__ import annotations

import csv
import re
import shlex
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from madengine.facts.model import GpuVendor, HostFacts

MARKER = "madengine-facts=1"
END = "end=1"
MAX_VALUE = 200  # characters kept of any one value (a product name, a version...)
MAX_OUTPUT = 4 * 1024 * 1024  # bytes of probe output read (a 64-GPU rocminfo, filtered, is ~50 KB)

_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.rc)?$")
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+_~:-]{0,63}$")
_GFX = re.compile(r"\bgfx[0-9a-f]{3,4}\b")
_SPACES = re.compile(r"\s+")


def clean(value: str | None) -> str | None:
    """One line of text fit to store and print: control and format characters (terminal escapes,
    bidi overrides, NULs) removed, whitespace collapsed, at most MAX_VALUE characters; None if empty."""
    if value is None:
        return None
    kept = "".join(c for c in value if not unicodedata.category(c).startswith("C") or c in " \t")
    text = _SPACES.sub(" ", kept).strip()[:MAX_VALUE].strip()
    return text or None


def version(value: str | None) -> str | None:
    """A version string (`6.3.1`, `535.86.10`, `20.10.24+dfsg1`), or None for anything else."""
    text = clean(value)
    return text if text is not None and _VERSION.match(text) else None


def token(value: str | None) -> str | None:
    """One word (a host name, a kernel release, a machine type), or None for anything else:
    undecodable bytes (U+FFFD) are not part of a name."""
    text = clean(value)
    return text if text is not None and " " not in text and "\ufffd" not in text else None


def _unique(values: Iterable[str | None]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
    return out


def _key_value(line: str) -> tuple[str, str] | None:
    """`  Marketing Name:    AMD Instinct MI210 ` -> ("Marketing Name", "AMD Instinct MI210")."""
    key, sep, value = line.partition(":")
    if not sep:
        return None
    return key.strip(), value.strip()


# --- AMD ---

@dataclass
class AmdGpu:
    """One GPU as an AMD tool describes it; any field may be unknown."""

    arch: str | None = None
    product: str | None = None
    driver: str | None = None


def gfx(value: str | None) -> str | None:
    """The LLVM target in `value` without features: `amdgcn-amd-amdhsa--gfx90a:sramecc+:xnack-` -> gfx90a."""
    match = _GFX.search(value or "")
    return match.group(0) if match else None


def rocminfo(text: str) -> list[AmdGpu]:
    """The GPU agents of `rocminfo` (its `Agent N` blocks whose Device Type is GPU), in order.

    The arch is the agent's first `gfx` name, as ROCm madengine's `rocminfo | grep -o -m 1 'gfx.*'`.
    """
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        if re.match(r"^\s*Agent\s+\d+\s*$", line):
            blocks.append([])
        else:
            blocks[-1].append(line)
    gpus: list[AmdGpu] = []
    for block in blocks:
        device_type = None
        names: list[str] = []
        product = None
        for line in block:
            kv = _key_value(line)
            if kv is None:
                continue
            key, value = kv
            if key == "Device Type" and device_type is None:
                device_type = value
            elif key == "Name":
                names.append(value)
            elif key == "Marketing Name" and product is None:
                product = value
        arch = next((a for a in map(gfx, names) if a), None)
        if device_type == "GPU" or (device_type is None and arch is not None):
            gpus.append(AmdGpu(arch=arch, product=clean(product)))
    return gpus


def kfd_topology(lines: Iterable[str]) -> list[AmdGpu]:
    """GPU nodes of the KFD topology from `<node dir> <property> <value>` lines (simd_count > 0).

    gfx_target_version is major*10000 + minor*100 + stepping, the stepping a hex digit:
    90010 -> gfx90a, 90402 -> gfx942, 110000 -> gfx1100.
    """
    nodes: dict[str, dict[str, int]] = defaultdict(dict)
    for line in lines:
        parts = line.rsplit(" ", 2)
        if len(parts) == 3 and parts[2].strip().isdigit():
            nodes[parts[0]][parts[1]] = int(parts[2])
    gpus: list[AmdGpu] = []
    for props in nodes.values():
        target = props.get("gfx_target_version", 0)
        if props.get("simd_count", 0) > 0 and target > 0:
            major, minor, step = target // 10000, target // 100 % 100, target % 100
            arch = f"gfx{major}{minor}{step:x}" if 6 <= major <= 99 and minor < 10 and step < 16 else None
            gpus.append(AmdGpu(arch=arch))
    return gpus


def amd_smi_static(text: str) -> list[AmdGpu]:
    """`amd-smi static --asic --driver`: a `GPU: N` block per GPU, with ASIC (MARKET_NAME,
    TARGET_GRAPHICS_VERSION) and DRIVER (VERSION; DRIVER_VERSION in older versions) sections."""
    gpus: list[AmdGpu] = []
    section = ""
    for line in text.splitlines():
        kv = _key_value(line)
        if kv is None:
            continue
        key, value = kv
        if key == "GPU" and not line[:1].isspace():
            gpus.append(AmdGpu())
            section = ""
            continue
        if not gpus:
            continue
        if not value:
            section = key
        elif key == "MARKET_NAME" and value != "N/A":
            gpus[-1].product = clean(value)
        elif key == "TARGET_GRAPHICS_VERSION":
            gpus[-1].arch = gfx(value)
        elif section == "DRIVER" and key in ("VERSION", "DRIVER_VERSION"):
            gpus[-1].driver = version(value)
    return gpus


def amd_smi_version(text: str) -> str | None:
    """The ROCm version in `amd-smi version`'s `... | ROCm version: 6.2.0 | ...`."""
    match = re.search(r"ROCm version:\s*([^\s|]+)", text)
    return version(match.group(1)) if match else None


def amd_smi_driver(text: str) -> str | None:
    """The amdgpu driver version in recent `amd-smi version`s: `... | amdgpu version: 6.16.13 | ...`."""
    match = re.search(r"amdgpu version:\s*([^\s|]+)", text)
    return version(match.group(1)) if match else None


def rocm_smi(text: str) -> tuple[list[AmdGpu], str | None]:
    """`rocm-smi --showproductname --showdriverversion`: `GPU[i] : Card Series: ...`, `GFX Version`
    lines per GPU, and one `Driver version: ...` line."""
    gpus: dict[str, AmdGpu] = {}
    driver = None
    for line in text.splitlines():
        match = re.match(r"^\s*GPU\[(\d+)\]\s*:\s*(.*)$", line)
        if match:
            kv = _key_value(match.group(2))
            gpu = gpus.setdefault(match.group(1), AmdGpu())
            if kv is None:
                continue
            key, value = kv
            if key.lower() == "card series" and gpu.product is None:
                gpu.product = clean(value)
            elif key.lower() == "gfx version":
                gpu.arch = gfx(value)
        else:
            kv = _key_value(line)
            if kv is not None and kv[0].lower() == "driver version":
                driver = version(kv[1])
    return list(gpus.values()), driver


def rocm_version_file(line: str) -> str | None:
    """`/opt/rocm/.info/version` holds `6.2.0-66`: the version without its build number."""
    return version(line.strip().split("-")[0])


# --- NVIDIA ---

@dataclass
class NvidiaGpu:
    name: str | None
    driver: str | None
    compute_cap: str | None = None

    @property
    def arch(self) -> str | None:
        """`8.0` -> `sm_80`, `10.0` -> `sm_100` (the name nvcc gives the architecture)."""
        match = re.match(r"^(\d+)\.(\d+)$", self.compute_cap or "")
        return f"sm_{match.group(1)}{match.group(2)}" if match else None


def nvidia_smi_query(text: str) -> list[NvidiaGpu]:
    """`nvidia-smi --query-gpu=name,driver_version[,compute_cap] --format=csv,noheader`: a row per GPU."""
    gpus: list[NvidiaGpu] = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) not in (2, 3):
            continue
        name, driver = clean(row[0]), version(row[1])
        if name is None or driver is None:
            continue
        gpus.append(NvidiaGpu(name, driver, row[2].strip() if len(row) == 3 else None))
    return gpus


def nvidia_proc_version(line: str) -> str | None:
    """/proc/driver/nvidia/version: `NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.86.10  <date>`."""
    match = re.search(r"Kernel Module.*?\s(\d+\.\d+(?:\.\d+)*)(?:\s|$)", line)
    return version(match.group(1)) if match else None


def cuda_from_nvcc(text: str) -> str | None:
    """`nvcc --version`: `Cuda compilation tools, release 12.2, V12.2.140`."""
    match = re.search(r"release\s+(\d+\.\d+)", text)
    return match.group(1) if match else None


def cuda_from_nvidia_smi(text: str) -> str | None:
    """nvidia-smi's header: `| NVIDIA-SMI 535.86.10   Driver Version: 535.86.10   CUDA Version: 12.2 |`."""
    match = re.search(r"CUDA Version:\s*(\d+\.\d+)", text)
    return match.group(1) if match else None


# --- the probe's output ---

@dataclass
class ProbeOutput:
    """The probe's lines grouped by key; `ok(tool)` is True when the tool ran and exited 0."""

    values: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    status: dict[str, int] = field(default_factory=dict)

    def first(self, key: str) -> str | None:
        lines = self.values.get(key)
        return lines[0] if lines else None

    def ok(self, tool: str) -> bool:
        return self.status.get(tool) == 0

    def text(self, tool: str) -> str:
        """What `tool` printed, when it exited 0; else nothing."""
        return "\n".join(self.values.get(tool, ())) if self.ok(tool) else ""


def split_output(output: str | bytes) -> ProbeOutput:
    """Group the probe's `key=value` lines. Lines before its start marker (a login banner) and
    lines that are not `key=value` are ignored; undecodable bytes become U+FFFD."""
    text = (output[:MAX_OUTPUT].decode("utf-8", errors="replace") if isinstance(output, bytes)
            else output[:MAX_OUTPUT])
    lines = text.splitlines()
    if MARKER in lines:
        lines = lines[lines.index(MARKER) + 1:]
    out = ProbeOutput()
    for line in lines:
        if line == END:
            break
        key, sep, value = line.partition("=")
        if not sep or not _KEY.match(key):
            continue
        if key.endswith(".rc"):
            code = value.strip()
            out.status[key[:-3]] = int(code) if code.isdigit() else -1
        else:
            out.values[key].append(value)
    return out


def _os_name(value: str | None) -> str | None:
    """PRETTY_NAME's value as os-release quotes it (`"Debian GNU/Linux 12 (bookworm)"`)."""
    if value is None:
        return None
    try:
        return clean(" ".join(shlex.split(value)))
    except ValueError:  # an unbalanced quote: keep the text
        return clean(value.strip("\"'"))


def _join(values: Sequence[str | None]) -> str | None:
    return ", ".join(_unique(values)) or None


def parse(output: str | bytes) -> HostFacts:
    """The facts the probe's output tells; never raises on any input (what is unclear is None)."""
    out = split_output(output)

    uname = (out.first("uname") or "").split()
    hostname, kernel, arch = (token(uname[i]) if len(uname) > i else None for i in range(3))

    docker = version(out.text("docker").splitlines()[0]) if out.text("docker") else None

    nvidia = nvidia_smi_query(out.text("nvidia_smi"))
    nvidia_proc_gpus = len(out.values.get("nvidia_proc_gpu", ()))
    amd_sources = [
        rocminfo(out.text("rocminfo")),
        kfd_topology(out.values.get("kfd", ())),
        amd_smi_static(out.text("amdsmi_static")),
    ]
    smi_gpus, smi_driver = rocm_smi(out.text("rocm_smi"))
    amd_sources.append(smi_gpus)
    amd_gpus = next((gpus for gpus in amd_sources if gpus), [])

    vendor: GpuVendor = "NONE"
    count = 0
    gpu_arch = product = driver = None
    if nvidia or nvidia_proc_gpus:
        vendor = "NVIDIA"
        count = len(nvidia) or nvidia_proc_gpus
        gpu_arch = ",".join(sorted(_unique(g.arch for g in nvidia))) or None
        product = _join([g.name for g in nvidia])
        driver = (nvidia[0].driver if nvidia else None) or nvidia_proc_version(out.first("nvidia_proc_version") or "")
    elif amd_gpus or out.first("dev_kfd") is not None:
        vendor = "AMD"
        count = len(amd_gpus)
        gpu_arch = next((",".join(sorted(archs)) for archs in
                         (_unique(g.arch for g in gpus) for gpus in amd_sources) if archs), None)
        product = next((p for p in (_join([g.product for g in gpus]) for gpus in amd_sources) if p), None)
        smi_static_driver = next((g.driver for g in amd_sources[2] if g.driver), None)
        driver = (version(out.first("amdgpu_version")) or smi_static_driver
                  or amd_smi_driver(out.text("amdsmi_version")) or smi_driver)

    rocm = rocm_version_file(out.first("rocm_version_file") or "") or amd_smi_version(out.text("amdsmi_version"))
    cuda = cuda_from_nvcc(out.text("nvcc")) or cuda_from_nvidia_smi(out.text("nvidia_smi_header"))

    return HostFacts(
        hostname=hostname, os=_os_name(out.first("os_release")), kernel=kernel, arch=arch, docker=docker,
        gpu_vendor=vendor, gpu_count=count, gpu_arch=gpu_arch, gpu_product=product, driver=driver,
        rocm=rocm, cuda=cuda,
    )
