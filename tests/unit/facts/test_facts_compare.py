"""What the planner asks of facts: changes under rerun_on, skip_gpu_arch, perf.csv's columns."""

from __future__ import annotations

import dataclasses

import pytest

from madengine.facts import (
    DEFAULT_RERUN_ON,
    FACT_KEYS,
    HostFacts,
    change_note,
    changed,
    perf_gpu_architecture,
    perf_machine_name,
    skip_reason,
    summary,
)

AMD = HostFacts(hostname="gpu-1", docker="27.3.1", gpu_vendor="AMD", gpu_count=8, gpu_arch="gfx90a",
                gpu_product="AMD Instinct MI250X/MI250", driver="6.7.0", rocm="6.2.0")
NVIDIA = HostFacts(hostname="dgx-3", gpu_vendor="NVIDIA", gpu_count=8, gpu_arch="sm_80",
                   gpu_product="NVIDIA A100-SXM4-40GB", driver="550.54.15", cuda="12.4")
NO_GPU = HostFacts(hostname="cpu-1", docker="27.3.1")


def test_keys() -> None:
    assert FACT_KEYS == ("gpu_arch", "driver", "rocm", "cuda", "docker")
    assert DEFAULT_RERUN_ON == ("gpu_arch", "driver", "rocm", "cuda")


def test_a_new_rocm_is_a_change() -> None:
    new = dataclasses.replace(AMD, rocm="6.3.1")
    assert changed(AMD, new) == ["rocm 6.2.0 → 6.3.1"]
    assert change_note("gpu-1", changed(AMD, new)) == "gpu-1: rocm 6.2.0 → 6.3.1"


def test_same_facts_no_change() -> None:
    assert changed(AMD, AMD, FACT_KEYS) == []
    assert changed(AMD, dataclasses.replace(AMD, hostname="renamed", kernel="6.9", os="other")) == []


def test_only_the_named_facts_count_in_their_order() -> None:
    new = dataclasses.replace(AMD, rocm="6.3.1", driver="6.8.5", docker="28.0.0")
    assert changed(AMD, new) == ["driver 6.7.0 → 6.8.5", "rocm 6.2.0 → 6.3.1"]
    assert changed(AMD, new, ["docker", "rocm", "docker"]) == ["docker 27.3.1 → 28.0.0", "rocm 6.2.0 → 6.3.1"]
    assert changed(AMD, new, []) == []


def test_unknown_on_either_side_is_no_change() -> None:
    lost = dataclasses.replace(AMD, rocm=None, driver=None, gpu_arch=None)
    assert changed(AMD, lost, FACT_KEYS) == []
    assert changed(lost, AMD, FACT_KEYS) == []
    assert changed(HostFacts(), HostFacts(), FACT_KEYS) == []


def test_gpus_gone_or_come_are_a_change() -> None:
    gone = dataclasses.replace(NO_GPU, hostname="gpu-1")
    assert changed(AMD, gone) == ["gpu_arch gfx90a → none"]
    assert changed(gone, AMD) == ["gpu_arch none → gfx90a"]
    assert changed(AMD, gone, ["rocm", "driver"]) == []  # only gpu_arch names the GPUs themselves


def test_an_amd_host_whose_gpus_could_not_be_listed_is_not_a_change() -> None:
    unlisted = dataclasses.replace(AMD, gpu_count=0, gpu_arch=None)
    assert changed(AMD, unlisted) == []


def test_another_vendor_is_another_arch() -> None:
    assert changed(AMD, NVIDIA, ["gpu_arch"]) == ["gpu_arch gfx90a → sm_80"]


def test_an_unknown_key_is_refused() -> None:
    with pytest.raises(ValueError, match="'kernel' is not a host fact"):
        changed(AMD, AMD, ["kernel"])


# --- skip_gpu_arch, as ROCm madengine's filter_images_by_skip_gpu_arch ---

def test_skip_on_an_exact_arch() -> None:
    gfx908 = dataclasses.replace(AMD, gpu_arch="gfx908")
    assert skip_reason(gfx908, "gfx908,gfx1100") == "gfx908 in skip_gpu_arch"
    assert skip_reason(gfx908, ("gfx1100", "gfx908")) == "gfx908 in skip_gpu_arch"
    assert skip_reason(gfx908, " gfx1100 ,  gfx908 ") == "gfx908 in skip_gpu_arch"


@pytest.mark.parametrize("listed", ["gfx90", "gfx9", "GFX90A", "gfx90a:xnack-", "gfx90a ;", "", ",,", ()])
def test_no_skip_on_prefixes_case_or_variants(listed: str | tuple[str, ...]) -> None:
    assert skip_reason(AMD, listed) is None


def test_nvidia_products_match_by_rocms_short_name_full_name_or_sm() -> None:
    assert skip_reason(NVIDIA, "A100") == "A100 in skip_gpu_arch"
    assert skip_reason(NVIDIA, "NVIDIA A100-SXM4-40GB") == "NVIDIA A100-SXM4-40GB in skip_gpu_arch"
    assert skip_reason(NVIDIA, "sm_80") == "sm_80 in skip_gpu_arch"
    assert skip_reason(NVIDIA, "H100,gfx90a") is None
    h100 = dataclasses.replace(NVIDIA, gpu_product="NVIDIA H100 PCIe", gpu_arch="sm_90")
    assert skip_reason(h100, "H100") == "H100 in skip_gpu_arch"


def test_a_mixed_host_is_skipped_when_any_arch_is_listed() -> None:
    mixed = dataclasses.replace(AMD, gpu_arch="gfx908,gfx90a")
    assert skip_reason(mixed, "gfx90a") == "gfx90a in skip_gpu_arch"


def test_unknown_arch_or_no_gpu_is_not_skipped() -> None:
    assert skip_reason(dataclasses.replace(AMD, gpu_arch=None), "gfx90a") is None
    assert skip_reason(NO_GPU, "gfx90a,none,NONE") is None


# --- perf.csv ---

def test_perf_gpu_architecture() -> None:
    assert perf_gpu_architecture(AMD) == "gfx90a"
    assert perf_gpu_architecture(dataclasses.replace(AMD, gpu_arch="gfx908,gfx90a")) == "gfx908,gfx90a"
    assert perf_gpu_architecture(NVIDIA) == "NVIDIA A100-SXM4-40GB"  # what ROCm madengine writes there
    assert perf_gpu_architecture(dataclasses.replace(NVIDIA, gpu_product=None)) == "sm_80"
    assert perf_gpu_architecture(NO_GPU) == ""
    assert perf_gpu_architecture(None) == ""
    assert perf_gpu_architecture(dataclasses.replace(AMD, gpu_arch=None)) == ""


def test_perf_machine_name() -> None:
    assert perf_machine_name(AMD, "lab/gpu-1") == "gpu-1"
    assert perf_machine_name(HostFacts(), "gpu-2") == "gpu-2"
    assert perf_machine_name(None, "gpu-2") == "gpu-2"
    assert perf_machine_name(None) == ""


def test_summary() -> None:
    full = dataclasses.replace(AMD, os="Ubuntu 22.04.4 LTS", kernel="6.8.0-45-generic", arch="x86_64")
    assert summary(full) == ("Ubuntu 22.04.4 LTS, kernel 6.8.0-45-generic, x86_64, docker 27.3.1, "
                             "8 × AMD gfx90a (AMD Instinct MI250X/MI250), driver 6.7.0, ROCm 6.2.0")
    assert summary(NO_GPU) == "docker 27.3.1, no GPU"
    assert summary(HostFacts(gpu_vendor="AMD")) == "AMD"
    assert summary(NVIDIA) == "8 × NVIDIA sm_80 (NVIDIA A100-SXM4-40GB), driver 550.54.15, CUDA 12.4"
