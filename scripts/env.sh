# Source this (`source scripts/env.sh`) to point the Vulkan loader at Kiln's private Mesa lavapipe driver, installed by
# scripts/setup-webgpu.sh in .kiln/lavapipe/. Does nothing when that driver is not there, and keeps a VK_ICD_FILENAMES
# that is already set. src/runtime/device.ts does the same by itself, so this is only needed for other tools
# (vulkaninfo, a plain `node` script using `webgpu`).
_kiln_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
if [ -f "$_kiln_root/.kiln/lavapipe/icd.json" ]; then
  if [ -z "${VK_ICD_FILENAMES:-}" ]; then
    export VK_ICD_FILENAMES="$_kiln_root/.kiln/lavapipe/icd.json"
  fi
  if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/kiln-xdg-$(id -u)"
  fi
  # 4-wide SIMD: lavapipe compiles shaders ~2.4x faster at the same speed (see src/runtime/device.ts)
  export LP_NATIVE_VECTOR_WIDTH="${LP_NATIVE_VECTOR_WIDTH:-128}"
  mkdir -p "$XDG_RUNTIME_DIR" 2>/dev/null && chmod 700 "$XDG_RUNTIME_DIR" 2>/dev/null
fi
unset _kiln_root
true
