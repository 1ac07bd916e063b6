"""Outputs of the real tools, as published (abbreviated where long; serials and UUIDs as published).

Each sample says where it comes from. They feed the parser tests and the fake tools of the probe
tests, so the script and the parser are checked against what the tools really print.
"""

from __future__ import annotations

# rocminfo on an MI250X node, ROCm 6.x: a CPU agent, then GPU agents named by their LLVM target,
# each with an ISA Info section naming the full target with features. Agent blocks as in
# ROCm/rocm_smi_lib#160 ("Agent 7 ... Name: gfx90a ... Marketing Name: AMD Instinct MI250X/MI250")
# and ROCm/aiter#179 ("ROCk module version 6.10.5 is loaded" header).
ROCMINFO_MI250 = """\
ROCk module version 6.10.5 is loaded
=====================
HSA System Attributes
=====================
Runtime Version:         1.14
Runtime Ext Version:     1.6
System Timestamp Freq.:  1000.000000MHz
Machine Model:           LARGE
System Endianness:       LITTLE

==========
HSA Agents
==========
*******
Agent 1
*******
  Name:                    AMD EPYC 7402P 24-Core Processor
  Uuid:                    CPU-XX
  Marketing Name:          AMD EPYC 7402P 24-Core Processor
  Vendor Name:             CPU
  Feature:                 None specified
  Profile:                 FULL_PROFILE
  Node:                    0
  Device Type:             CPU
  Cache Info:
    L1:                      32768(0x8000) KB
  ISA Info:
*******
Agent 2
*******
  Name:                    gfx90a
  Uuid:                    GPU-08d4bf7c6821467b
  Marketing Name:          AMD Instinct MI250X/MI250
  Vendor Name:             AMD
  Feature:                 KERNEL_DISPATCH
  Profile:                 BASE_PROFILE
  Node:                    1
  Device Type:             GPU
  Cache Info:
    L1:                      16(0x10) KB
    L2:                      8192(0x2000) KB
  Chip ID:                 29708(0x740c)
  ISA Info:
    ISA 1
      Name:                    amdgcn-amd-amdhsa--gfx90a:sramecc+:xnack-
      Machine Models:          HSA_MACHINE_MODEL_LARGE
*******
Agent 3
*******
  Name:                    gfx90a
  Uuid:                    GPU-124d13ccd7b050e5
  Marketing Name:          AMD Instinct MI250X/MI250
  Vendor Name:             AMD
  Feature:                 KERNEL_DISPATCH
  Node:                    2
  Device Type:             GPU
  ISA Info:
    ISA 1
      Name:                    amdgcn-amd-amdhsa--gfx90a:sramecc+:xnack-
*** Done ***
"""

# rocminfo on a Radeon RX 590 (gfx803) host, ROCm 6.x: one GPU agent; its second ISA is a
# generic target (ROCm >= 6.4 lists `gfx9-generic` and the like, which is not an arch).
# From robertrosenbusch/gfx803_rocm#13 and ROCm/legacy-rocm-build#5632 (ISA 2: amdgcn-amd-amdhsa--gfx11-generic).
ROCMINFO_RX590 = """\
ROCk module is loaded
*******
Agent 1
*******
  Name:                    AMD Ryzen 9 5900X 12-Core Processor
  Marketing Name:          AMD Ryzen 9 5900X 12-Core Processor
  Vendor Name:             CPU
  Device Type:             CPU
*******
Agent 2
*******
  Name:                    gfx803
  Uuid:                    GPU-XX
  Marketing Name:          Radeon RX 590 Series
  Vendor Name:             AMD
  Device Type:             GPU
  ISA Info:
    ISA 1
      Name:                    amdgcn-amd-amdhsa--gfx803
    ISA 2
      Name:                    amdgcn-amd-amdhsa--gfx9-generic
*** Done ***
"""

# `amd-smi static --asic --driver` on an MI350X node (AMD SMI in ROCm 7), from ROCm/rocm-systems#2987
# (`amd-smi static --bus --ifwi --asic --board --vbios --driver --vram --ras -g 0 1`, the ASIC and
# DRIVER sections kept).
AMD_SMI_STATIC_MI350X = """\
GPU: 0
    ASIC:
        MARKET_NAME: AMD Instinct MI350X
        VENDOR_ID: 0x1002
        VENDOR_NAME: Advanced Micro Devices Inc. [AMD/ATI]
        SUBVENDOR_ID: 0x1002
        DEVICE_ID: 0x75a0
        SUBSYSTEM_ID: 0x75a0
        REV_ID: 0x00
        ASIC_SERIAL: <redacted>
        OAM_ID: 6
        NUM_COMPUTE_UNITS: 128
        TARGET_GRAPHICS_VERSION: gfx950
    DRIVER:
        NAME: amdgpu
        VERSION: 6.18.3
        OS_KERNEL_VERSION: 5.15.0-164-generic

GPU: 1
    ASIC:
        MARKET_NAME: AMD Instinct MI350X
        VENDOR_ID: 0x1002
        DEVICE_ID: 0x75a0
        NUM_COMPUTE_UNITS: 128
        TARGET_GRAPHICS_VERSION: gfx950
    DRIVER:
        NAME: amdgpu
        VERSION: 6.18.3
        OS_KERNEL_VERSION: 5.15.0-164-generic

"""

# `amd-smi version`, ROCm 7.2 (ROCm/rocm-systems#7264) and ROCm 6.4 (the AMD SMI CLI docs,
# rocm.docs.amd.com/projects/amdsmi/en/docs-6.4.2: "Version: 25.5.1 | ROCm version: 6.4.2").
AMD_SMI_VERSION_72 = ("AMDSMI Tool: 26.5.0+e8e094445c | AMDSMI Library version: 26.5.0 | ROCm version: 7.2.3 | "
                      "amdgpu version: 6.16.13 | ionic version: N/A\n")
AMD_SMI_VERSION_64 = "AMDSMI Tool: 25.5.1+41065ee | AMDSMI Library version: 25.5.1 | ROCm version: 6.4.2\n"

# `rocm-smi --showproductname --showdriverversion` on MI300X VFs: the Product Info section as
# published (brick-house.org, "ROCm System Management Interface ... GFX Version: gfx942"), two GPUs
# kept, then the driver section rocm-smi prints for --showdriverversion.
ROCM_SMI_MI300X = """\
============================ ROCm System Management Interface ============================
====================================== Product Info ======================================
GPU[0]		: Card Series: 		AMD Instinct MI300X VF
GPU[0]		: Card Model: 		0x74b5
GPU[0]		: Card Vendor: 		Advanced Micro Devices, Inc. [AMD/ATI]
GPU[0]		: Card SKU: 		M3000108
GPU[0]		: Subsystem ID: 	0x74a1
GPU[0]		: Device Rev: 		0x00
GPU[0]		: Node ID: 		4
GPU[0]		: GUID: 		5656
GPU[0]		: GFX Version: 		gfx942
GPU[1]		: Card Series: 		AMD Instinct MI300X VF
GPU[1]		: Card Model: 		0x74b5
GPU[1]		: Card Vendor: 		Advanced Micro Devices, Inc. [AMD/ATI]
GPU[1]		: Node ID: 		5
GPU[1]		: GFX Version: 		gfx942
==========================================================================================
=============================== Version of System Component ==============================
Driver version: 6.8.5
==========================================================================================
================================== End of ROCm SMI Log ===================================
"""

# rocm-smi 4.0 on an MI100 (ROCm/legacy-rocm-build#1351): lowercase keys, the series a PCI id,
# no GFX Version line.
ROCM_SMI_MI100_ROCM4 = """\
======================= ROCm System Management Interface =======================
================================= Product Info =================================
GPU[0]		: Card series: 		0x738c
GPU[0]		: Card model: 		0xc34
GPU[0]		: Card vendor: 		Advanced Micro Devices, Inc. [AMD/ATI]
GPU[0]		: Card SKU: 		D34314
================================================================================
============================= End of ROCm SMI Log ==============================
"""

# /opt/rocm/.info/version: `6.3.2-66` as CiscoDevNet/intersight-python-utils#65 reports it.
ROCM_VERSION_FILE = "6.3.2-66\n"

# KFD topology node properties (/sys/class/kfd/kfd/topology/nodes/N/properties): a CPU node
# (simd_count 0) and an MI300X node (`gfx_target_version 90402`, ROCm/rocm-cli#343).
KFD_CPU_NODE = """\
cpu_cores_count 96
simd_count 0
mem_banks_count 1
gfx_target_version 0
vendor_id 0
"""
KFD_MI300X_NODE = """\
cpu_cores_count 0
simd_count 1216
mem_banks_count 1
gfx_target_version 90402
vendor_id 4098
device_id 29857
"""

# `nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader` on a host with two
# different GPUs; the values of triton-inference-server/server#8070 (`7.0, Default, 570.86.15,
# NVIDIA TITAN V, 0` / `8.9, ..., NVIDIA RTX 5880 Ada Generation, 1`), in this query's column order.
NVIDIA_SMI_QUERY_MIXED = """\
NVIDIA TITAN V, 570.86.15, 7.0
NVIDIA RTX 5880 Ada Generation, 570.86.15, 8.9
"""
NVIDIA_SMI_QUERY_A100 = """\
NVIDIA A100-SXM4-40GB, 580.126.09, 8.0
NVIDIA A100-SXM4-40GB, 580.126.09, 8.0
"""
# Drivers before 510 do not know compute_cap (nvidia-smi exits 2 with this on stdout).
NVIDIA_SMI_BAD_FIELD = 'Field "compute_cap" is not a valid field to query.\n'

# nvidia-smi's header, as bottlerocket-os/bottlerocket-core-kit#834 shows it on A100s.
NVIDIA_SMI_HEADER = """\
Thu Feb 19 19:24:54 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.126.09             Driver Version: 580.126.09     CUDA Version: 13.0     |
+-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|=========================================+========================+======================|
|   0  NVIDIA A100-SXM4-40GB          On  |   00000000:10:1C.0 Off |                    0 |
+-----------------------------------------+------------------------+----------------------+
"""
# nvidia-smi when the driver is gone (exit status 9).
NVIDIA_SMI_NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                        "Make sure that the latest NVIDIA driver is installed and running.\n")

# `nvcc --version` (CUDA 12.2).
NVCC_12_2 = """\
nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2023 NVIDIA Corporation
Built on Tue_Aug_15_22:02:13_PDT_2023
Cuda compilation tools, release 12.2, V12.2.140
Build cuda_12.2.r12.2/compiler.33191640_0
"""

# /proc/driver/nvidia/version: the proprietary module (dylanaraps/neofetch#876) and the open one
# (nix-community/nixGL#186, whose regex the `for x86_64` broke).
NVIDIA_PROC_CLOSED = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  384.98  Thu Oct 26 15:16:01 PDT 2017\n"
NVIDIA_PROC_OPEN = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  565.57.01  Release Build  "
                    "(dvs-builder@U16-A24-9-2)  Thu Oct 10 12:15:00 UTC 2024\n")

# `docker version --format '{{.Server.Version}}'` (Debian 12's docker.io, as on this machine).
DOCKER_SERVER = "20.10.24+dfsg1\n"
