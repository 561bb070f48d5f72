#!/usr/bin/env python3
"""Convert a torchvision VGG/ResNet checkpoint (.pth state_dict or pickled model) to .imw.

usage: /usr/bin/python3 tools/pth2imw.py --arch resnet50 in.pth out.imw [--no-classifier]
                                         [--source TEXT]

The state dict must hold exactly the tensors of torchvision.models.<arch> (checked by name
and shape against a freshly built model). Prefixes such as "module." (DataParallel) or
"features." wrapping a ResNet trunk (cirtorch-style) are stripped when that makes the keys
match. --no-classifier drops fc./classifier. (descriptor-only models, e.g. fine-tuned
retrieval nets that have no classifier). Needs Debian python3-torch + python3-torchvision.
"""
import argparse
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imw import write_imw  # noqa: E402

ARCHS = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
         "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def is_head(name):
    return name.startswith("fc.") or name.startswith("classifier.")


def expected_shapes(arch, classifier, num_classes):
    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked") and (classifier or not is_head(k))}


def normalise_keys(sd, want):
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    for prefix in ["", "module.", "features.", "module.features.", "model."]:
        cand = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if set(want) <= set(cand):
            return cand
    return sd


def convert(arch, sd, out, classifier=True, source="", num_classes=None):
    if num_classes is None:
        num_classes = sd["fc.weight"].shape[0] if "fc.weight" in sd else \
            sd["classifier.6.weight"].shape[0] if "classifier.6.weight" in sd else 1000
    want = expected_shapes(arch, classifier, num_classes)
    sd = normalise_keys(sd, want)
    missing = [k for k in want if k not in sd]
    if missing:
        hint = " (use --no-classifier for a trunk-only checkpoint)" if all(is_head(k) for k in missing) else ""
        raise SystemExit(f"pth2imw: {len(missing)} tensors of {arch} missing, first: {missing[0]}{hint}")
    tensors = []
    for k, shape in want.items():
        t = sd[k].detach().float().cpu()
        if tuple(t.shape) != shape:
            raise SystemExit(f"pth2imw: tensor {k} has shape {tuple(t.shape)}, expected {shape} for {arch}")
        tensors.append((k, t.numpy()))
    header = {
        "arch": arch,
        "input_order": "rgb",
        "input_scale": 1.0 / 255.0,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "bn_eps": 1e-05,
        "classes": num_classes if classifier else 0,
        "source": source or f"torchvision {arch} checkpoint, converted by tools/pth2imw.py",
    }
    write_imw(out, header, tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=ARCHS)
    ap.add_argument("--no-classifier", action="store_true")
    ap.add_argument("--source", default="")
    ap.add_argument("input")
    ap.add_argument("output")
    a = ap.parse_args()
    obj = torch.load(a.input, map_location="cpu")
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    elif isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    convert(a.arch, obj, a.output, classifier=not a.no_classifier, source=a.source)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
