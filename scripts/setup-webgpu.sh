#!/usr/bin/env bash
# Makes WebGPU (Dawn, npm `webgpu`) work on a machine without a GPU, using Mesa's software Vulkan driver (lavapipe).
#
# Debian bookworm's own Mesa 22.3 lavapipe is too old for Dawn (it finds no adapter), so this fetches
# mesa-vulkan-drivers from bookworm-backports (Mesa 25.x) with a PRIVATE apt configuration (the system's sources and
# package lists are not touched), extracts only libvulkan_lvp.so into .kiln/lavapipe/ and writes
# .kiln/lavapipe/icd.json pointing at it by absolute path. The libraries it links against (the Vulkan loader
# libvulkan1, libLLVM-15, libdrm, xcb, wayland-client, zstd, ...) are installed from the normal bookworm suites with
# apt-get install. Nothing else on the system changes.
#
# Idempotent: when .kiln/lavapipe/icd.json exists and Dawn finds an adapter through it, it does nothing. When no
# private ICD exists but Dawn already finds an adapter (a real GPU), it installs nothing either
# (KILN_FORCE_LAVAPIPE=1 installs lavapipe anyway).
#
# Use the result with `source scripts/env.sh`; src/runtime/device.ts also picks .kiln/lavapipe/icd.json up by itself.
#
# Environment knobs:
#   KILN_FORCE_LAVAPIPE=1    install lavapipe even if a WebGPU adapter is already available
#   KILN_DEBIAN_MIRROR=URL   Debian mirror (default http://deb.debian.org/debian)
#   KILN_DEBIAN_SECURITY=URL security mirror (default http://deb.debian.org/debian-security)
#   KILN_LVP_PRIVATE_DEPS=1  also put backports' versions of versioned dependencies (libdrm ...) next to the driver
#                            (done automatically when the system's versions leave symbols unresolved)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KILN_DIR="$ROOT/.kiln"
LVP_DIR="$KILN_DIR/lavapipe"
ICD="$LVP_DIR/icd.json"
LIB="$LVP_DIR/libvulkan_lvp.so"
APT_DIR="$KILN_DIR/apt"
MIRROR="${KILN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${KILN_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
SUITE=bookworm
T0=$SECONDS

log() { printf '[setup-webgpu] %s\n' "$*"; }
die() { printf '[setup-webgpu] error: %s\n' "$*" >&2; exit 1; }

if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/kiln-xdg-$(id -u)"
fi
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR" 2>/dev/null || true

# --- probes ----------------------------------------------------------------------------------------------------------

have_webgpu_pkg() { [ -f "$ROOT/node_modules/webgpu/package.json" ] && command -v node >/dev/null 2>&1; }

# probe_adapter [icd.json]: prints "vendor | architecture | device | description" and returns 0 when Dawn finds an
# adapter (with the given ICD, or with the environment as it is when none is given).
probe_adapter() {
  local icd="${1:-}"
  have_webgpu_pkg || return 2
  (
    cd "$ROOT"
    if [ -n "$icd" ]; then export VK_ICD_FILENAMES="$icd"; fi
    timeout 120 node --input-type=module -e '
      const { create, globals } = await import("webgpu");
      Object.assign(globalThis, globals);
      const gpu = create([]);
      const a = await gpu.requestAdapter();
      if (!a) { process.exit(1); }
      const i = a.info;
      console.log([i.vendor, i.architecture, i.device, i.description].join(" | "));
      process.exit(0);
    ' 2>/dev/null
  )
}

# The driver's shared-library dependencies all resolve (no "not found", no undefined symbol).
libs_resolve() {
  [ -f "$LIB" ] || return 1
  local out
  out="$(ldd -r "$LIB" 2>&1)" || return 1
  if grep -qE 'not found|undefined symbol' <<<"$out"; then
    grep -E 'not found|undefined symbol' <<<"$out" | head -20 >&2
    return 1
  fi
}

private_ok() {
  [ -f "$ICD" ] && libs_resolve || return 1
  local info rc=0
  info="$(probe_adapter "$ICD")" || rc=$?
  if [ $rc -eq 0 ]; then
    log "adapter via lavapipe: $info"
    return 0
  elif [ $rc -eq 2 ]; then
    log "node_modules/webgpu is not installed yet, so Dawn was not asked; the driver's libraries resolve"
    return 0
  fi
  return 1
}

# --- fast path ------------------------------------------------------------------------------------------------------

if [ -f "$ICD" ]; then
  if private_ok; then
    log "already set up ($ICD); nothing to do"
    exit 0
  fi
  log "$ICD exists but does not work; reinstalling"
elif [ "${KILN_FORCE_LAVAPIPE:-0}" != 1 ]; then
  if info="$(probe_adapter)"; then
    log "a WebGPU adapter is already available: $info"
    log "not installing lavapipe (KILN_FORCE_LAVAPIPE=1 installs it anyway)"
    exit 0
  fi
fi

# --- install ----------------------------------------------------------------------------------------------------------

[ "$(uname -m)" = x86_64 ] || log "warning: only tested on x86_64 (this is $(uname -m))"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian bookworm (see its header to do it by hand)"
if [ -r /etc/os-release ] && ! grep -q 'VERSION_CODENAME=bookworm' /etc/os-release; then
  log "warning: this is not Debian bookworm; trying anyway with bookworm-backports"
fi
ARCH="$(dpkg --print-architecture)"
LIBDIR="usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")"

SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n); else SUDO=(__need_root__); fi
fi

# A private apt configuration: its own sources list, package lists and cache under .kiln/apt.
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/sources.list.d" "$APT_DIR/debs"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SIGNED=""
[ -f "$KEYRING" ] && SIGNED="[signed-by=$KEYRING] "
cat >"$APT_DIR/sources.list" <<EOF
deb ${SIGNED}$MIRROR $SUITE main
deb ${SIGNED}$MIRROR $SUITE-updates main
deb ${SIGNED}$SECURITY $SUITE-security main
deb ${SIGNED}$MIRROR $SUITE-backports main
EOF
APT_OPTS=(
  -o "Dir::Etc::SourceList=$APT_DIR/sources.list"
  -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
  -o "Dir::State::Lists=$APT_DIR/lists"
  -o "Dir::Cache=$APT_DIR/cache"
  -o "Dir::Cache::archives=$APT_DIR/cache/archives"
  -o "APT::Sandbox::User=$(id -un)"
  -o "Acquire::Retries=3"
)
if [ "$(id -u)" != 0 ]; then
  # Unprivileged apt-get update/download need their own lock-free state.
  APT_OPTS+=(-o "Debug::NoLocking=1")
fi

log "apt-get update (private lists in .kiln/apt: $SUITE, $SUITE-updates, $SUITE-security, $SUITE-backports)"
apt-get "${APT_OPTS[@]}" -qq update || die "apt-get update failed (is $MIRROR reachable?)"

MESA_VER="$(apt-cache "${APT_OPTS[@]}" show "mesa-vulkan-drivers/$SUITE-backports" 2>/dev/null | sed -n 's/^Version: //p' | head -1)"
[ -n "$MESA_VER" ] || die "mesa-vulkan-drivers is not in $SUITE-backports"
DEPENDS="$(apt-cache "${APT_OPTS[@]}" show "mesa-vulkan-drivers=$MESA_VER" | sed -n 's/^Depends: //p' | head -1)"
log "mesa-vulkan-drivers $MESA_VER from $SUITE-backports; it depends on: $DEPENDS"

# The dependencies, without versions; of alternatives "a | b" the first.
mapfile -t DEP_PKGS < <(tr ',' '\n' <<<"$DEPENDS" | sed -E 's/\|.*//; s/\(.*\)//; s/:any//; s/^ +//; s/ +$//' | grep -v '^$')
DEP_PKGS+=(libvulkan1) # the Vulkan loader Dawn dlopens (libvulkan.so.1)
MISSING=()
for p in "${DEP_PKGS[@]}"; do
  st="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
  [ "$st" = "install ok installed" ] || MISSING+=("$p")
done
# Drop duplicates.
if [ ${#MISSING[@]} -gt 0 ]; then mapfile -t MISSING < <(printf '%s\n' "${MISSING[@]}" | sort -u); fi

apt_install() {
  [ "${SUDO[*]:-}" = __need_root__ ] && die "need root (or password-less sudo) to apt-get install: $*"
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get "${APT_OPTS[@]}" -y -q --no-install-recommends \
    install "$@" >"$APT_DIR/install.log" 2>&1 || { tail -30 "$APT_DIR/install.log" >&2; die "apt-get install failed"; }
}

if [ ${#MISSING[@]} -gt 0 ]; then
  log "apt-get install (from $SUITE, not backports): ${MISSING[*]}"
  apt_install "${MISSING[@]}"
else
  log "all the libraries it needs are installed already"
fi

log "apt-get download mesa-vulkan-drivers=$MESA_VER"
rm -rf "$APT_DIR/debs" "$APT_DIR/x" && mkdir -p "$APT_DIR/debs" "$APT_DIR/x"
(cd "$APT_DIR/debs" && apt-get "${APT_OPTS[@]}" -qq download "mesa-vulkan-drivers=$MESA_VER") || die "download failed"
dpkg -x "$APT_DIR"/debs/mesa-vulkan-drivers_*.deb "$APT_DIR/x"
[ -f "$APT_DIR/x/$LIBDIR/libvulkan_lvp.so" ] || die "no libvulkan_lvp.so in the package"

rm -rf "$LVP_DIR" && mkdir -p "$LVP_DIR"
cp "$APT_DIR/x/$LIBDIR/libvulkan_lvp.so" "$LIB"
API_VERSION="$(sed -n 's/.*"api_version": *"\([^"]*\)".*/\1/p' "$APT_DIR/x/usr/share/vulkan/icd.d/lvp_icd.json" | head -1)"
echo "$MESA_VER" >"$LVP_DIR/VERSION"

# If the system's (older) versions of versioned dependencies leave symbols unresolved (or when asked), put backports'
# versions in .kiln/lavapipe/lib and point the driver's RUNPATH there (patchelf).
if [ "${KILN_LVP_PRIVATE_DEPS:-0}" = 1 ] || ! libs_resolve 2>/dev/null; then
  log "using backports' versions of versioned dependencies privately (system ones leave symbols unresolved, or KILN_LVP_PRIVATE_DEPS=1)"
  # "pkg (>= ver)" entries that the installed version does not satisfy and that backports has.
  mapfile -t VERSIONED < <(tr ',' '\n' <<<"$DEPENDS" | sed -E 's/\|.*//; s/:any//' | sed -nE 's/^ *([^ ]+) *\(>= *([^)]+)\).*/\1 \2/p')
  PRIV=()
  for pv in "${VERSIONED[@]}"; do
    p="${pv%% *}" v="${pv#* }"
    case "$p" in libc6 | libgcc-s1 | libstdc++6) continue ;; esac
    inst="$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)"
    if [ -n "$inst" ] && dpkg --compare-versions "$inst" ge "$v"; then continue; fi
    if apt-cache "${APT_OPTS[@]}" madison "$p" | grep -q "$SUITE-backports"; then PRIV+=("$p/$SUITE-backports"); fi
  done
  mkdir -p "$LVP_DIR/lib" "$APT_DIR/priv"
  if [ ${#PRIV[@]} -gt 0 ]; then
    log "apt-get download ${PRIV[*]}"
    (cd "$APT_DIR/priv" && apt-get "${APT_OPTS[@]}" -qq download "${PRIV[@]}") || die "download failed"
    for deb in "$APT_DIR"/priv/*.deb; do dpkg -x "$deb" "$APT_DIR/priv/x"; done
    cp -a "$APT_DIR/priv/x/$LIBDIR"/*.so* "$LVP_DIR/lib/" 2>/dev/null || true
  fi
  if ! command -v patchelf >/dev/null 2>&1; then
    log "apt-get install patchelf"
    apt_install patchelf
  fi
  patchelf --set-rpath "$LVP_DIR/lib" "$LIB"
  libs_resolve || die "libvulkan_lvp.so still has unresolved libraries or symbols (see above)"
fi

cat >"$ICD" <<EOF
{
    "file_format_version": "1.0.0",
    "ICD": {
        "library_path": "$LIB",
        "api_version": "${API_VERSION:-1.3.0}"
    }
}
EOF
rm -rf "$APT_DIR"
log "wrote $ICD (Mesa $MESA_VER lavapipe)"

rc=0
info="$(probe_adapter "$ICD")" || rc=$?
if [ $rc -eq 0 ]; then
  log "Dawn finds: $info"
elif [ $rc -eq 2 ]; then
  log "node_modules/webgpu is not installed yet: run npm install; Dawn was not asked"
else
  die "Dawn still finds no adapter with $ICD (try: VK_ICD_FILENAMES=$ICD VK_LOADER_DEBUG=all node ...)"
fi
log "done in $((SECONDS - T0)) s; in a shell: source scripts/env.sh"
