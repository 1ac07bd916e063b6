"""The parser: each tool's real output, and the probe's whole output, noise and odd bytes included."""

from __future__ import annotations

import pytest

from madengine.facts import HostFacts, parse
from madengine.facts import parsers as facts_parse
from tests.unit.facts import samples


def tool(key: str, text: str, rc: int = 0) -> str:
    """What the probe prints for one tool: each line as key=line, then key.rc."""
    return "".join(f"{key}={line}\n" for line in text.splitlines()) + f"{key}.rc={rc}\n"


def output(*parts: str, uname: str = "gpu-1 6.8.0-45-generic x86_64",
           os_release: str = '"Ubuntu 22.04.4 LTS"') -> str:
    return f"madengine-facts=1\nuname={uname}\nos_release={os_release}\n" + "".join(parts) + "end=1\n"


# --- one tool at a time ---

def test_rocminfo_lists_gpu_agents_with_their_target_and_product() -> None:
    gpus = facts_parse.rocminfo(samples.ROCMINFO_MI250)
    assert [(g.arch, g.product) for g in gpus] == [("gfx90a", "AMD Instinct MI250X/MI250")] * 2


def test_rocminfo_takes_the_agent_name_not_a_generic_isa() -> None:
    gpus = facts_parse.rocminfo(samples.ROCMINFO_RX590)
    assert [(g.arch, g.product) for g in gpus] == [("gfx803", "Radeon RX 590 Series")]


def test_rocminfo_without_gpu_agents_lists_none() -> None:
    cpu_only = samples.ROCMINFO_MI250.split("Agent 2")[0]
    assert facts_parse.rocminfo(cpu_only) == []


def test_amd_smi_static_reads_market_name_target_and_driver() -> None:
    gpus = facts_parse.amd_smi_static(samples.AMD_SMI_STATIC_MI350X)
    assert [(g.arch, g.product, g.driver) for g in gpus] == [("gfx950", "AMD Instinct MI350X", "6.18.3")] * 2


def test_amd_smi_version_gives_rocm_and_recent_ones_the_driver() -> None:
    assert facts_parse.amd_smi_version(samples.AMD_SMI_VERSION_72) == "7.2.3"
    assert facts_parse.amd_smi_driver(samples.AMD_SMI_VERSION_72) == "6.16.13"
    assert facts_parse.amd_smi_version(samples.AMD_SMI_VERSION_64) == "6.4.2"
    assert facts_parse.amd_smi_driver(samples.AMD_SMI_VERSION_64) is None


def test_rocm_smi_reads_series_gfx_version_and_driver() -> None:
    gpus, driver = facts_parse.rocm_smi(samples.ROCM_SMI_MI300X)
    assert [(g.arch, g.product) for g in gpus] == [("gfx942", "AMD Instinct MI300X VF")] * 2
    assert driver == "6.8.5"


def test_rocm_smi_4_has_no_arch() -> None:
    gpus, driver = facts_parse.rocm_smi(samples.ROCM_SMI_MI100_ROCM4)
    assert [(g.arch, g.product) for g in gpus] == [(None, "0x738c")]
    assert driver is None


@pytest.mark.parametrize(("target", "arch"), [
    (90402, "gfx942"), (90010, "gfx90a"), (90008, "gfx908"), (90500, "gfx950"), (110000, "gfx1100"),
    (100300, "gfx1030"), (90012, "gfx90c"), (110501, "gfx1151"),
])
def test_kfd_gfx_target_version_decodes_to_the_llvm_target(target: int, arch: str) -> None:
    lines = ["/sys/n/1 simd_count 64", f"/sys/n/1 gfx_target_version {target}"]
    assert [g.arch for g in facts_parse.kfd_topology(lines)] == [arch]


@pytest.mark.parametrize("target", [91000, 90016, 1000000000, 50000])
def test_kfd_targets_that_cannot_be_encoded_are_unknown(target: int) -> None:
    lines = ["/sys/n/1 simd_count 64", f"/sys/n/1 gfx_target_version {target}"]
    assert [g.arch for g in facts_parse.kfd_topology(lines)] == [None]


def test_kfd_cpu_nodes_are_not_gpus() -> None:
    lines = [f"/sys/n/0 {line}" for line in samples.KFD_CPU_NODE.splitlines()]
    lines += [f"/sys/n/1 {line}" for line in samples.KFD_MI300X_NODE.splitlines()]
    assert [g.arch for g in facts_parse.kfd_topology(lines)] == ["gfx942"]


def test_nvidia_smi_query_rows() -> None:
    gpus = facts_parse.nvidia_smi_query(samples.NVIDIA_SMI_QUERY_MIXED)
    assert [(g.name, g.driver, g.arch) for g in gpus] == [
        ("NVIDIA TITAN V", "570.86.15", "sm_70"), ("NVIDIA RTX 5880 Ada Generation", "570.86.15", "sm_89")]


def test_nvidia_smi_error_text_is_no_gpu() -> None:
    assert facts_parse.nvidia_smi_query(samples.NVIDIA_SMI_BAD_FIELD) == []
    assert facts_parse.nvidia_smi_query(samples.NVIDIA_SMI_NO_DRIVER) == []


def test_cuda_versions_from_nvcc_and_from_the_driver() -> None:
    assert facts_parse.cuda_from_nvcc(samples.NVCC_12_2) == "12.2"
    assert facts_parse.cuda_from_nvidia_smi(samples.NVIDIA_SMI_HEADER) == "13.0"


def test_nvidia_driver_from_proc_closed_and_open_modules() -> None:
    assert facts_parse.nvidia_proc_version(samples.NVIDIA_PROC_CLOSED) == "384.98"
    assert facts_parse.nvidia_proc_version(samples.NVIDIA_PROC_OPEN) == "565.57.01"


def test_rocm_version_file_drops_the_build_number() -> None:
    assert facts_parse.rocm_version_file(samples.ROCM_VERSION_FILE) == "6.3.2"
    assert facts_parse.rocm_version_file("garbage here") is None


# --- the probe's whole output ---

def test_amd_host() -> None:
    facts = parse(output(
        tool("docker", samples.DOCKER_SERVER),
        "amdgpu_version=6.10.5\n",
        "rocm_version_file=6.2.0-66\n",
        tool("rocminfo", samples.ROCMINFO_MI250),
    ))
    assert facts == HostFacts(
        hostname="gpu-1", os="Ubuntu 22.04.4 LTS", kernel="6.8.0-45-generic", arch="x86_64",
        docker="20.10.24+dfsg1", gpu_vendor="AMD", gpu_count=2, gpu_arch="gfx90a",
        gpu_product="AMD Instinct MI250X/MI250", driver="6.10.5", rocm="6.2.0", cuda=None)


def test_amd_host_without_rocminfo_uses_amd_smi() -> None:
    facts = parse(output(tool("amdsmi_static", samples.AMD_SMI_STATIC_MI350X),
                         tool("amdsmi_version", samples.AMD_SMI_VERSION_72)))
    assert (facts.gpu_vendor, facts.gpu_count, facts.gpu_arch, facts.gpu_product, facts.driver, facts.rocm) == (
        "AMD", 2, "gfx950", "AMD Instinct MI350X", "6.18.3", "7.2.3")


def test_amd_host_with_rocm_smi_only() -> None:
    facts = parse(output(tool("rocm_smi", samples.ROCM_SMI_MI300X)))
    assert (facts.gpu_vendor, facts.gpu_count, facts.gpu_arch, facts.gpu_product, facts.driver) == (
        "AMD", 2, "gfx942", "AMD Instinct MI300X VF", "6.8.5")


def test_amd_host_with_only_the_kernel_driver_reads_the_kfd_topology() -> None:
    kfd = "".join(f"kfd=/sys/class/kfd/kfd/topology/nodes/{n} {line}\n"
                  for n, text in ((0, samples.KFD_CPU_NODE), (1, samples.KFD_MI300X_NODE),
                                  (2, samples.KFD_MI300X_NODE))
                  for line in text.splitlines())
    facts = parse(output("dev_kfd=1\n", "amdgpu_version=6.8.5\n", kfd))
    assert (facts.gpu_vendor, facts.gpu_count, facts.gpu_arch, facts.driver, facts.rocm) == (
        "AMD", 2, "gfx942", "6.8.5", None)


def test_dev_kfd_alone_says_amd_with_unknown_gpus() -> None:
    facts = parse(output("dev_kfd=1\n"))
    assert (facts.gpu_vendor, facts.gpu_count, facts.gpu_arch) == ("AMD", 0, None)


def test_mixed_amd_host_lists_every_arch_sorted() -> None:
    facts = parse(output(tool("rocminfo", samples.ROCMINFO_RX590 + samples.ROCMINFO_MI250)))
    assert (facts.gpu_count, facts.gpu_arch, facts.archs) == (3, "gfx803,gfx90a", ("gfx803", "gfx90a"))
    assert facts.gpu_product == "Radeon RX 590 Series, AMD Instinct MI250X/MI250"


def test_nvidia_host() -> None:
    facts = parse(output(tool("nvidia_smi", samples.NVIDIA_SMI_QUERY_A100),
                         tool("nvidia_smi_header", samples.NVIDIA_SMI_HEADER)))
    assert (facts.gpu_vendor, facts.gpu_count, facts.gpu_arch, facts.gpu_product, facts.driver, facts.cuda) == (
        "NVIDIA", 2, "sm_80", "NVIDIA A100-SXM4-40GB", "580.126.09", "13.0")


def test_nvcc_wins_over_the_drivers_cuda() -> None:
    facts = parse(output(tool("nvcc", samples.NVCC_12_2), tool("nvidia_smi_header", samples.NVIDIA_SMI_HEADER)))
    assert facts.cuda == "12.2"


def test_nvidia_before_510_has_no_arch() -> None:
    facts = parse(output(tool("nvidia_smi", "Tesla V100-SXM2-16GB, 470.103.01\n")))
    assert (facts.gpu_vendor, facts.gpu_count, facts.gpu_arch, facts.driver) == (
        "NVIDIA", 1, None, "470.103.01")


def test_nvidia_without_nvidia_smi_counts_the_drivers_gpus() -> None:
    facts = parse(output("nvidia_proc_version=" + samples.NVIDIA_PROC_OPEN,
                         "nvidia_proc_gpu=0000:10:1c.0\n", "nvidia_proc_gpu=0000:10:1d.0\n"))
    assert (facts.gpu_vendor, facts.gpu_count, facts.driver) == ("NVIDIA", 2, "565.57.01")


def test_a_machine_without_gpus_says_none() -> None:
    facts = parse(output(tool("docker", samples.DOCKER_SERVER)))
    assert (facts.gpu_vendor, facts.gpu_count, facts.gpu_arch, facts.driver, facts.has_gpus) == (
        "NONE", 0, None, None, False)


# --- noise ---

def test_a_failed_tools_output_is_ignored() -> None:
    facts = parse(output(tool("nvidia_smi", samples.NVIDIA_SMI_NO_DRIVER, rc=9),
                         tool("rocminfo", samples.ROCMINFO_MI250, rc=1),
                         tool("docker", "Cannot connect to the Docker daemon", rc=1)))
    assert (facts.gpu_vendor, facts.gpu_count, facts.docker) == ("NONE", 0, None)


def test_a_tool_killed_by_timeout_counts_as_failed() -> None:
    facts = parse(output(tool("rocminfo", samples.ROCMINFO_MI250, rc=137)))
    assert facts.gpu_vendor == "NONE"


def test_a_tool_without_its_status_line_counts_as_failed() -> None:
    truncated = output().replace("end=1\n", "") + "rocminfo=  Name: gfx90a\nrocminfo=  Device Type: GPU\n"
    assert parse(truncated).gpu_vendor == "NONE"


def test_lines_before_the_marker_are_a_banner() -> None:
    banner = "Welcome to gpu-1\nrocm_version_file=9.9.9\nuname=liar 1 2\n"
    facts = parse(banner + output("rocm_version_file=6.2.0\n"))
    assert (facts.hostname, facts.rocm) == ("gpu-1", "6.2.0")


def test_garbage_and_odd_bytes_never_crash() -> None:
    junk = bytes(range(256)) * 4 + b"\n=\n==\nrocminfo.rc=zz\nuname=\xff\xfe\x00\n\x1b[31mred\x1b[0m"
    assert parse(junk) == HostFacts()
    assert parse(b"") == HostFacts()
    assert parse("madengine-facts=1\n") == HostFacts()


def test_values_lose_control_characters_and_are_bounded() -> None:
    hostile = "\x1b]0;pwned\x07AMD \x1b[31mInstinct\u202e MI210" + "x" * 1000
    facts = parse(output(tool("rocminfo", f"Agent 2\n  Name: gfx90a\n  Marketing Name: {hostile}\n"
                                          "  Device Type: GPU\n"),
                         uname="h\x1b[2Jost 6.1 x86_64"))
    assert facts.gpu_product is not None and "\x1b" not in facts.gpu_product and "\u202e" not in facts.gpu_product
    assert facts.gpu_product.startswith("]0;pwnedAMD [31mInstinct MI210")
    assert len(facts.gpu_product) <= facts_parse.MAX_VALUE
    assert facts.hostname == "h[2Jost"


def test_a_version_that_is_not_one_is_unknown() -> None:
    facts = parse(output("rocm_version_file=Segmentation fault\n",
                         tool("docker", "<html>oops</html>"),
                         tool("nvcc", "release banana")))
    assert (facts.rocm, facts.docker, facts.cuda) == (None, None, None)


def test_invalid_utf8_in_a_product_becomes_replacement_characters() -> None:
    raw = output(tool("nvidia_smi", "NVIDIA A100\xff, 550.54.15, 8.0")).encode("latin-1")
    facts = parse(raw)
    assert (facts.gpu_vendor, facts.gpu_product) == ("NVIDIA", "NVIDIA A100\ufffd")


def test_output_past_the_cap_is_not_read() -> None:
    flood = ("madengine-facts=1\n" + tool("docker", samples.DOCKER_SERVER) + "x" * facts_parse.MAX_OUTPUT
             + "\nrocm_version_file=6.2.0\n")
    facts = parse(flood.encode())
    assert (facts.docker, facts.rocm) == ("20.10.24+dfsg1", None)
