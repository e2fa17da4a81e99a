#!/usr/bin/env bash
# Installs Chromium (Debian's package) for the browser test (test/browser), which runs Kiln's runtime and generated
# WGSL on `navigator.gpu` in headless Chromium, WebGPU on its bundled software Vulkan (SwiftShader).
#
# Does nothing when a Chromium is there already ($KILN_CHROMIUM, /usr/bin/chromium) or when KILN_NO_BROWSER=1.
# Needs root or password-less sudo for apt-get. Never fails the command it is part of: when Chromium cannot be
# installed it says why, and the browser test is skipped with a message.
set -uo pipefail

log() { printf '[setup-browser] %s\n' "$*"; }

[ "${KILN_NO_BROWSER:-}" = 1 ] && { log "KILN_NO_BROWSER=1: not installing Chromium (the browser test will be skipped)"; exit 0; }
for c in "${KILN_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do
  [ -n "$c" ] && [ -x "$c" ] && exit 0
done
command -v apt-get >/dev/null 2>&1 || { log "no apt-get here: install Chromium yourself and set KILN_CHROMIUM (the browser test will be skipped)"; exit 0; }

SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
    log "need root (or password-less sudo) to apt-get install chromium; the browser test will be skipped"
    exit 0
  fi
fi

LOG="${TMPDIR:-/tmp}/kiln-setup-browser.log"
install() { DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium >"$LOG" 2>&1; }
T0=$SECONDS
log "apt-get install chromium (for the browser test)"
if ! install; then
  log "retrying after apt-get update"
  "${SUDO[@]}" apt-get update -qq >>"$LOG" 2>&1
  if ! install; then
    tail -5 "$LOG" | sed 's/^/[setup-browser]   /'
    log "could not install Chromium (log: $LOG); the browser test will be skipped"
    exit 0
  fi
fi
log "chromium installed in $((SECONDS - T0)) s: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
