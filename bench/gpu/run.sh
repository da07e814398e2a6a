#!/usr/bin/env bash
# The device check of the CUDA backend, in one call (< 10 min on an H200):
#   builds the addon + CUDA plugin there, runs the GPU tests (test/gpu/cuda.test.ts, then the whole
#   suite with the CUDA backend chosen by 'auto'), runs the GPU bench (geoedit kernels vs the
#   PyTorch peer and the device-to-device copy bandwidth), and writes results with date, device
#   and driver to bench/results/ (and to $OUT when set, for the device tool).
#
# The GPU machine has no Node and no network. Prepare .nodebin/ here first (git-ignored):
#   npm ci && npm run build && bash bench/gpu/pack.sh
# which writes .nodebin/node.xz (xz -T0 -c $(command -v node) > .nodebin/node.xz),
# node_modules.tar.xz, node-headers.tar.xz and prebuilt/ (fallback binaries). Then run:
#   device run: command "bash bench/gpu/run.sh", carry [".nodebin"], timeout_s 570
# Options: --quick (fewer reps, smaller end-to-end case), --no-suite (skip the full test suite),
#          --archs=90 (build real code for these archs only: a faster build there; default: all),
#          --profile (Nsight Compute over bench/gpu/profile.js after the bench: occupancy, stalls),
#          --no-bench (skip bench/gpu/bench.js), --checkpoint (also bench/checkpoint.js: the checkpoint
#          pipeline, 3 x 1 GiB bf16, CPU vs CUDA vs 'auto' at density 1 and 0.1, against the read time),
#          --only-suite (build, then only the whole suite with 'auto' = cuda),
#          --sanitize (compute-sanitizer memcheck + racecheck over bench/gpu/sanitize.js),
#          --tiny (small bench shapes: a dry run, e.g. here on the CPU emulator:
#          GEOEDIT_CUDA_PLUGIN=$PWD/build/Release/emu/geoedit_cuda.so GEOEDIT_CUDA_SKIP_DRIVER_CHECK=1 bash bench/gpu/run.sh --tiny).
set -uo pipefail
cd "$(dirname "$0")/../.."
T0=$(date +%s)
BENCH_ARGS=""
SUITE=1
SANITIZE=0
PROFILE=0
ONLY_SUITE=0
BENCH=1
CKPT=0
ARCHS=""
for a in "$@"; do
  case "$a" in
    --quick|--tiny) BENCH_ARGS="$BENCH_ARGS $a" ;;
    --no-suite) SUITE=0 ;;
    --sanitize) SANITIZE=1 ;;
    --archs=*) ARCHS="${a#--archs=}" ;;
    --profile) PROFILE=1 ;;
    --only-suite) ONLY_SUITE=1; SUITE=1; BENCH=0 ;;
    --no-bench) BENCH=0 ;;
    --checkpoint) CKPT=1 ;;
  esac
done
step() { echo; echo "== $* ($(( $(date +%s) - T0 ))s)"; }
# Copies this run's result files to $OUT (the device tool) after each step, so a run stopped at
# its limit still returns what it finished (the log goes there through tee).
save() {
  [ -n "${OUT:-}" ] || return 0
  find "$RES" -maxdepth 1 \( -name 'gpu-2*' -o -name 'gpu-tests-*' -o -name 'gpu-suite-*' -o -name 'checkpoint-*' \) \
    -newer .cache/gpu-run-start -exec cp {} "$OUT/" \;
}
RES=bench/results
mkdir -p "$RES" .cache
touch .cache/gpu-run-start
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
LOG="$RES/gpu-check-$STAMP.log"
exec > >(tee "$LOG" ${OUT:+"$OUT/gpu-check.log"}) 2>&1

step "machine"
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 | head -5
(nvcc --version 2>&1 | tail -2) || echo "nvcc not found"
nproc

step "node"
if ! command -v node >/dev/null 2>&1; then
  if [ ! -f .nodebin/node.xz ]; then
    echo "no node on PATH and no .nodebin/node.xz: run bench/gpu/pack.sh on the dev machine and carry .nodebin"
    exit 1
  fi
  mkdir -p /tmp/geoedit-node/bin
  xz -dc .nodebin/node.xz > /tmp/geoedit-node/bin/node && chmod +x /tmp/geoedit-node/bin/node
  export PATH=/tmp/geoedit-node/bin:$PATH
fi
node --version || exit 1
if [ ! -d node_modules ]; then
  tar -xJf .nodebin/node_modules.tar.xz || { echo "node_modules missing (.nodebin/node_modules.tar.xz)"; exit 1; }
fi
NODE_INC=""
for d in "$(dirname "$(dirname "$(command -v node)")")/include/node" /usr/include/node /usr/local/include/node; do
  [ -f "$d/node_api.h" ] && { NODE_INC=$d; break; }
done
if [ -z "$NODE_INC" ] && [ -f .nodebin/node-headers.tar.xz ]; then
  mkdir -p /tmp/geoedit-node/include && tar -xJf .nodebin/node-headers.tar.xz -C /tmp/geoedit-node/include && NODE_INC=/tmp/geoedit-node/include/node
fi
echo "Node-API headers: ${NODE_INC:-none}"

step "build: addon + CUDA plugin (cmake, GEOEDIT_CUDA=ON)"
GEN=""
command -v ninja >/dev/null 2>&1 && GEN="-G Ninja"
BUILD_OK=0
# The emulator is built only for a dry run that uses it (GEOEDIT_CUDA_PLUGIN set, see above).
EMU=OFF
[ -n "${GEOEDIT_CUDA_PLUGIN:-}" ] && EMU=ON
if [ -n "$NODE_INC" ]; then
  rm -rf build
  # cmake directly (cmake-js would try to download headers); the addon needs only Node-API headers.
  if cmake -S . -B build $GEN -DCMAKE_BUILD_TYPE=Release -DCMAKE_JS_VERSION=device -DCMAKE_JS_INC="$NODE_INC" \
       -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/build/Release" -DGEOEDIT_CUDA=ON ${ARCHS:+-DGEOEDIT_CUDA_ARCHS=$ARCHS} -DGEOEDIT_CUDA_EMU=$EMU \
     && cmake --build build -j "$(nproc)"; then
    BUILD_OK=1
  fi
fi
if [ "$BUILD_OK" != 1 ]; then
  echo "build failed or impossible here: falling back to .nodebin/prebuilt"
  mkdir -p build/Release/plugins
  cp .nodebin/prebuilt/geoedit.node build/Release/ && cp .nodebin/prebuilt/plugins/geoedit_cuda.so build/Release/plugins/ || exit 1
fi
ls -la build/Release build/Release/plugins
node node_modules/typescript/bin/tsc -p tsconfig.json && node scripts/write-esm.js || exit 1
node -e 'const g=require("./dist/cjs/index.js"); console.log(JSON.stringify(g.info(), null, 1)); const s=g.cudaStatus(); if(!s.available){console.error("CUDA unavailable: "+s.reason); process.exit(3)}' || exit 1

RC_CUDA=0
if [ "$ONLY_SUITE" = 0 ]; then
  step "GPU tests (test/gpu/cuda.test.ts)"
  timeout 240 node node_modules/vitest/vitest.mjs run test/gpu/cuda.test.ts --reporter=verbose --reporter=json --outputFile="$RES/gpu-tests-$STAMP.json"
  RC_CUDA=$?
  save
fi
RC_SUITE=0
if [ "$SUITE" = 1 ]; then
  step "the whole suite with backend 'auto' = cuda (GEOEDIT_AUTO_BACKEND=cuda)"
  GEOEDIT_AUTO_BACKEND=cuda timeout 400 node node_modules/vitest/vitest.mjs run --reporter=default --reporter=json --outputFile="$RES/gpu-suite-$STAMP.json"
  RC_SUITE=$?
  save
fi

RC_BENCH=0
if [ "$BENCH" = 1 ]; then
  step "GPU bench"
  timeout 240 node bench/gpu/bench.js $BENCH_ARGS
  RC_BENCH=$?
  save
fi
if [ "$CKPT" = 1 ]; then
  step "checkpoint pipeline: CPU vs CUDA (bench/checkpoint.js)"
  timeout 300 node bench/checkpoint.js --sizes "${CKPT_GIB:-1}" --reps 3 --backends cpu,cuda,auto --density 1,0.1 --tag "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9\n' '-' | tr -d '\n')"
  rc=$?; [ $rc != 0 ] && RC_BENCH=$rc
  save
fi

if [ "$PROFILE" = 1 ]; then
  step "Nsight Compute: the edit kernels"
  for c in "bf16 16384 4096 1" "bf16 8192 14336 1" "bf16 8192 4096 0.1"; do
    timeout 90 ncu --clock-control none --kernel-name regex:edit_ --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
      node bench/gpu/profile.js $c 2>&1 | grep -vE '^==PROF==|^\s*$' | cut -c1-150
  done
fi

RC_SAN=0
if [ "$SANITIZE" = 1 ] && [ $(( $(date +%s) - T0 )) -lt ${SANITIZE_BEFORE:-400} ]; then
  step "compute-sanitizer (memcheck, racecheck) over bench/gpu/sanitize.js"
  if command -v compute-sanitizer >/dev/null 2>&1; then
    for tool in memcheck racecheck; do
      timeout 75 compute-sanitizer --tool $tool --error-exitcode 9 --print-limit 20 node bench/gpu/sanitize.js
      rc=$?; echo "compute-sanitizer $tool rc=$rc"; [ $rc != 0 ] && RC_SAN=$rc
    done
  else
    echo "compute-sanitizer not on PATH"
  fi
fi

step "done: sanitizer rc=$RC_SAN, cuda tests rc=$RC_CUDA, suite rc=$RC_SUITE, bench rc=$RC_BENCH"
[ "$RC_SAN" = 0 ] && [ "$RC_CUDA" = 0 ] && [ "$RC_SUITE" = 0 ] && [ "$RC_BENCH" = 0 ]
