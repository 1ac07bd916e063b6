# madengine host facts probe (POSIX sh; dash, bash and busybox ash).
#
# Read-only: it runs query tools and reads files, writes nothing, and always exits 0.
# Prints `key=value` lines: its own values, and every line a tool printed as `<tool>=<line>`
# followed by `<tool>.rc=<exit status>`; Python (madengine/facts/parsers.py) makes sense of them.
# Every tool is looked up with `command -v` and run under `timeout`; a missing, failing or hanging
# tool only leaves its facts unknown.
#
#   sh -c "$(cat probe.sh)" madengine-facts [TOOL_TIMEOUT_SECONDS] [ROOT]
#
# ROOT (default: none) prefixes /sys, /proc, /dev, /etc, /opt/rocm and /usr/local/cuda, for tests only.
exec 2>/dev/null </dev/null
export LC_ALL=C
T=${1:-10}
case $T in '' | *[!0-9]* | 0*) T=10 ;; esac  # 0 would mean no timeout at all
ROOT=${2:-}
R=${ROCM_PATH:-$ROOT/opt/rocm}
# Tools usually live there on GPU hosts, where a non-interactive (ssh) shell may not have them on
# PATH; appended, so what PATH already finds comes first.
PATH=${PATH:-/usr/bin:/bin}:$R/bin:$ROOT/opt/rocm/bin:$ROOT/usr/local/cuda/bin
export PATH

echo 'madengine-facts=1'

have() { command -v "$1" >/dev/null 2>&1; }

# Which form of timeout this host has: coreutils and busybox >= 1.33 take -k (kill after a grace).
if timeout -k 1 5 true; then
    TO="timeout -k 1 $T"
elif timeout 5 true; then
    TO="timeout $T"
else
    TO=""
fi

OUT='' RC=0
# call TOOL ARGS...: its stdout in OUT, its exit status in RC (124 or 137 when it timed out).
call() {
    # $TO is split into words on purpose (a command and its options, all from this script).
    # shellcheck disable=SC2086
    OUT=$($TO "$@")
    RC=$?
}

# emit KEY [SED_ADDRESS]: print OUT (the lines SED_ADDRESS selects, default all) as KEY=line, then KEY.rc.
emit() {
    if [ -n "$OUT" ]; then
        printf '%s\n' "$OUT" | sed -n -E "${2:-}s/^/$1=/p"
    fi
    echo "$1.rc=$RC"
}

# readline KEY FILE: the first line of FILE as KEY=line, without starting a process.
readline() {
    if [ -r "$2" ] && IFS= read -r line <"$2"; then
        printf '%s=%s\n' "$1" "$line"
    fi
}

# --- the machine ---
echo "uname=$(uname -n -r -m)"
for f in "$ROOT/etc/os-release" "$ROOT/usr/lib/os-release"; do
    if [ -r "$f" ]; then
        while IFS= read -r line; do
            case $line in PRETTY_NAME=*) printf 'os_release=%s\n' "${line#PRETTY_NAME=}" ;; esac
        done <"$f"
        break
    fi
done

if have docker; then
    call docker version --format '{{.Server.Version}}'
    emit docker
fi

# --- AMD ---
[ -e "$ROOT/dev/kfd" ] && echo 'dev_kfd=1'
readline amdgpu_version "$ROOT/sys/module/amdgpu/version"
readline rocm_version_file "$R/.info/version"
# KFD topology: a node per CPU and GPU; GPUs have simd_count > 0 and a gfx_target_version.
for f in "$ROOT"/sys/class/kfd/kfd/topology/nodes/*/properties; do
    if [ -r "$f" ]; then
        while IFS= read -r line; do
            case $line in gfx_target_version\ * | simd_count\ *) printf 'kfd=%s %s\n' "${f%/properties}" "$line" ;; esac
        done <"$f"
    fi
done

rocminfo_gpu=''
if have rocminfo; then
    call rocminfo
    emit rocminfo '/^[[:space:]]*(Agent [0-9]+[[:space:]]*$|(Name|Marketing Name|Device Type):)/'
    case $OUT in *gfx*) [ "$RC" = 0 ] && rocminfo_gpu=1 ;; esac
fi
# amd-smi and rocm-smi are slow (Python): asked only for what rocminfo and sysfs do not tell
# (the product without rocminfo, the driver without the amdgpu module's version file).
amdsmi_ok=''
if have amd-smi && { [ -z "$rocminfo_gpu" ] || [ ! -r "$ROOT/sys/module/amdgpu/version" ]; }; then
    call amd-smi static --asic --driver
    emit amdsmi_static
    [ "$RC" = 0 ] && amdsmi_ok=1
fi
if [ -z "$amdsmi_ok" ] && have rocm-smi && { [ -z "$rocminfo_gpu" ] || [ ! -r "$ROOT/sys/module/amdgpu/version" ]; }; then
    call rocm-smi --showproductname --showdriverversion
    emit rocm_smi
fi
if [ ! -r "$R/.info/version" ] && have amd-smi; then
    call amd-smi version
    emit amdsmi_version
fi

# --- NVIDIA ---
readline nvidia_proc_version "$ROOT/proc/driver/nvidia/version"
for d in "$ROOT"/proc/driver/nvidia/gpus/*; do
    [ -e "$d" ] && echo "nvidia_proc_gpu=${d##*/}"
done
if have nvidia-smi; then
    call nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader
    if [ "$RC" != 0 ]; then  # drivers before 510 do not know compute_cap
        call nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    fi
    emit nvidia_smi
fi
cuda=''
if have nvcc; then
    call nvcc --version
    emit nvcc '/release/'
    [ "$RC" = 0 ] && case $OUT in *release*) cuda=1 ;; esac
fi
if [ -z "$cuda" ] && have nvidia-smi; then
    call nvidia-smi
    emit nvidia_smi_header '/CUDA Version/'
fi

echo 'end=1'
exit 0
