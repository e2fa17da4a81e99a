#!/usr/bin/env bash
# Packs what `kiln bench` needs on a machine that has a GPU but no Node and no npm (the lent H200 of the `device`
# tool; nothing outside it can be reached from it) into .gpu/ (git-ignored), to be carried there:
#   .gpu/node.xz                      this machine's Node binary (x86-64 Linux), compressed
#   .gpu/src/cli/kiln.mjs             the CLI bundled by esbuild (compiler, runtime, bench), src/models beside it
#   .gpu/node_modules/webgpu          Dawn for Node, linux-x64 only (dawn.node compressed)
#   .gpu/node_modules/@tensorflow/*   TF.js (the peer) as one CommonJS bundle: core, CPU and WebGPU backends
#   .gpu/.gl                          the Vulkan/EGL loader packages (Debian), in case the machine has no loader
# Then scripts/gpu-bench.sh runs there (see its header). Run this from the repository root after `npm install`.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[gpu-pack] %s\n' "$*"; }
[ "$(uname -m)" = x86_64 ] || { log "this machine is $(uname -m): the GPU machine is x86-64, pack on an x86-64 machine"; exit 1; }
OUT=.gpu
rm -rf "$OUT"
mkdir -p "$OUT/src/cli" "$OUT/node_modules/webgpu/dist/linux-x64" "$OUT/node_modules/@tensorflow/tfjs" "$OUT/node_modules/@tensorflow/tfjs-backend-webgpu"

log "Node $(node --version) -> node.xz"
xz -T0 -6 -c "$(command -v node)" >"$OUT/node.xz"

log "bundling the CLI (esbuild)"
# webgpu stays a package (it loads dawn.node by path); TF.js is required at run time through createRequire, so it is
# bundled separately below; jax-js and the browser/test tools are not run by `kiln bench --no-jax` there.
npx esbuild --bundle --platform=node --format=esm --target=node20 --log-level=warning \
  --external:webgpu --external:@jax-js/jax --external:playwright-core --external:ts-morph \
  --banner:js="import { createRequire as __kilnRequire } from 'node:module'; const require = __kilnRequire(import.meta.url);" \
  --outfile="$OUT/src/cli/kiln.mjs" <<'EOF'
import { main } from './src/cli/main.ts';
await main(process.argv);
EOF
cp -r src/models "$OUT/src/models"
# ts-morph (the TypeScript compiler, ~10 MB) only writes `kiln export`'s index.d.ts: a stand-in that says so
mkdir -p "$OUT/node_modules/ts-morph"
echo '{ "name": "ts-morph", "type": "module", "main": "index.js" }' >"$OUT/node_modules/ts-morph/package.json"
cat >"$OUT/node_modules/ts-morph/index.js" <<'EOF2'
export class Project { constructor() { throw new Error('ts-morph is not carried to the GPU machine (scripts/gpu-pack.sh): kiln export cannot write index.d.ts there'); } }
export const VariableDeclarationKind = {};
EOF2

log "Dawn (webgpu $(node -p "require('./node_modules/webgpu/package.json').version"), linux-x64)"
cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$OUT/node_modules/webgpu/"
gzip -9 -c node_modules/webgpu/dist/linux-x64/dawn.node >"$OUT/node_modules/webgpu/dist/linux-x64/dawn.node.gz"

log "TF.js (one CommonJS bundle, so the core is shared by both backends)"
echo "module.exports = require('@tensorflow/tfjs'); require('@tensorflow/tfjs-backend-webgpu');" |
  npx esbuild --bundle --platform=node --format=cjs --log-level=warning --outfile="$OUT/node_modules/@tensorflow/tfjs/index.js"
echo '{ "name": "@tensorflow/tfjs", "main": "index.js" }' >"$OUT/node_modules/@tensorflow/tfjs/package.json"
echo '// registered by the @tensorflow/tfjs bundle beside it' >"$OUT/node_modules/@tensorflow/tfjs-backend-webgpu/index.js"
echo '{ "name": "@tensorflow/tfjs-backend-webgpu", "main": "index.js" }' >"$OUT/node_modules/@tensorflow/tfjs-backend-webgpu/package.json"

log "Vulkan/EGL loader packages (Debian, amd64)"
mkdir -p "$OUT/.gl" /tmp/kiln-amd64/partial
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/kiln-amd64)
if apt-get "${o[@]}" update -qq >/dev/null 2>&1 && (cd "$OUT/.gl" && apt-get "${o[@]}" download -qq libvulkan1 libegl1 libglvnd0 >/dev/null 2>&1); then
  log "  $(ls "$OUT/.gl" | tr '\n' ' ')"
else
  log "  could not download them (no apt or no network): gpu-bench.sh then relies on the machine's own loader"
fi
log "done: $(du -sh "$OUT" | cut -f1) in $OUT (the device tool carries at most 64 MiB with the working tree)"
