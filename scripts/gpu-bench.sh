#!/usr/bin/env bash
# Runs `kiln bench` on a GPU machine without Node, from what scripts/gpu-pack.sh put in .gpu/. With the device tool,
# one call:   run(command: "bash scripts/gpu-bench.sh --repeats 5", carry: [".gpu"], timeout_s: 540)
# (a group alone: --only kernels | graphs | attention | precision | recompute)
# Arguments go to `kiln bench` (default: the whole suite); the report lands in $OUT (or out/gpu-bench).
# Needs root to unpack the loader packages into / (the device machine runs commands as root).
set -uo pipefail
cd "$(dirname "$0")/.."
log() { printf '[gpu-bench] %s\n' "$*"; }
G=.gpu
[ -f "$G/node.xz" ] || { log "no $G/node.xz: run scripts/gpu-pack.sh here first and carry .gpu"; exit 1; }
T0=$SECONDS
if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1; then
  for f in "$G"/.gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
  ldconfig
fi
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$ICD" ] && export VK_DRIVER_FILES="$ICD"
mkdir -p /tmp/kiln-node
xz -dc "$G/node.xz" >/tmp/kiln-node/node && chmod +x /tmp/kiln-node/node
[ -f "$G/node_modules/webgpu/dist/linux-x64/dawn.node" ] || gzip -dc "$G/node_modules/webgpu/dist/linux-x64/dawn.node.gz" >"$G/node_modules/webgpu/dist/linux-x64/dawn.node"
export KILN_LAVAPIPE=0 XDG_RUNTIME_DIR=/tmp
log "unpacked in $((SECONDS - T0)) s; node $(/tmp/kiln-node/node --version); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
REPORT="${OUT:-out/gpu-bench}"
mkdir -p "$REPORT"
/tmp/kiln-node/node "$G/src/cli/kiln.mjs" doctor 2>&1 | tee "$REPORT/doctor.txt"
/tmp/kiln-node/node "$G/src/cli/kiln.mjs" bench --no-jax --no-cpu --out "$REPORT" "$@" 2>&1 | tee "$REPORT/bench.log"
