#!/bin/sh
# bench_deps.sh -- install the anchors of `make bench` idempotently (a no-op when present):
#   Debian: python3-torch, python3-torchvision (PyTorch anchor, model export and .imw
#           conversion; torch.onnx.export needs no python3-onnx), nodejs + npm,
#           libopenblas0-pthread (it becomes libblas.so.3: FAISS's batched IndexFlatIP and
#           PyTorch's linear layers on Debian's reference BLAS would be unrealistically slow);
#   npm:    onnxruntime-node (version pinned in bench/package.json) into bench/node_modules,
#           with --ignore-scripts: its install script fetches a GPU build from outside the
#           registry and fails here; the CPU library ships inside the package.
# usage: sh tools/bench_deps.sh     (root for apt-get, as on the project's machines)
set -eu
cd "$(dirname "$0")/.."

need=""
for p in python3-torch python3-torchvision python3-faiss libopenblas0-pthread; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
command -v node >/dev/null 2>&1 || need="$need nodejs"
command -v npm >/dev/null 2>&1 || need="$need npm"
if [ -n "$need" ]; then
    echo "bench-deps: apt-get install$need"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
fi

want=$(sed -n 's/.*"onnxruntime-node": *"\([^"]*\)".*/\1/p' bench/package.json)
have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' bench/node_modules/onnxruntime-node/package.json 2>/dev/null | head -1)
if [ "$have" != "$want" ]; then
    echo "bench-deps: npm install onnxruntime-node@$want (--ignore-scripts) into bench/node_modules"
    (cd bench && npm install --ignore-scripts --no-audit --no-fund --no-package-lock --loglevel=error)
fi
lib=$(ls bench/node_modules/onnxruntime-node/bin/napi-v*/linux/*/libonnxruntime.so* 2>/dev/null | head -1)
[ -n "$lib" ] || { echo "bench-deps: onnxruntime-node has no Linux CPU library under bin/napi-v*/linux/" >&2; exit 1; }
echo "bench-deps: ok (torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)' 2>/dev/null || echo '?'), onnxruntime-node $want)"
