#!/usr/bin/env bash
# Prepares .nodebin/ (git-ignored) for bench/gpu/run.sh on a GPU machine that has no Node and no
# network: the node binary, node_modules (after npm ci), the Node-API headers, and a prebuilt
# addon + plugin as a fallback if building there fails. Run from the repository root after
# `npm ci && npm run build`. Sizes: ~30 MB in all (the device call carries at most 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .nodebin/prebuilt/plugins
xz -T0 -c "$(command -v node)" > .nodebin/node.xz
tar -cJf .nodebin/node_modules.tar.xz node_modules
inc="$(dirname "$(dirname "$(command -v node)")")/include/node"
[ -f "$inc/node_api.h" ] || inc=/usr/include/node
tar -C "$(dirname "$inc")" -cJf .nodebin/node-headers.tar.xz \
  node/node_api.h node/node_api_types.h node/js_native_api.h node/js_native_api_types.h node/node_version.h
if [ -f build/Release/geoedit.node ]; then cp build/Release/geoedit.node .nodebin/prebuilt/; fi
if [ -f build/Release/plugins/geoedit_cuda.so ]; then cp build/Release/plugins/geoedit_cuda.so .nodebin/prebuilt/plugins/; fi
du -sh .nodebin/* .nodebin/prebuilt/* 2>/dev/null
