#!/usr/bin/env python3
"""Convert a torchvision VGG/ResNet checkpoint (.pth state_dict or pickled model) to .imw.

usage: /usr/bin/python3 tools/pth2imw.py --arch resnet50 in.pth out.imw [--no-classifier]
                                         [--source TEXT] [--dtype f32|f16|bf16|int8]

The checkpoint may be a state_dict, a dict holding one under "state_dict" or "model"
(cirtorch, most training scripts), or a whole pickled torchvision model. Its tensors must be
exactly those of torchvision.models.<arch> (checked by name and shape against a freshly built
model; num_batches_tracked is dropped). Key layouts recognised:
  - torchvision names, optionally prefixed "module." (DataParallel) or "model.";
  - cirtorch (filipradenovic/cnnimageretrieval-pytorch) ImageRetrievalNet: VGG trunks are
    "features.N.*" (torchvision's own names); ResNet trunks are "features.0" (conv1),
    "features.1" (bn1), "features.4".."features.7" (layer1..layer4). Its GeM parameter
    "pool.p" and learned whitening "whiten.*" / "lwhiten.*" are not part of the trunk: they
    are reported and left out (imret has its own pooling options and learns its own whitening).
Retrieval checkpoints have no classifier: use --no-classifier (drops fc./classifier.), which
writes classes=0. Any other unexpected tensor is an error naming it.
Needs Debian python3-torch + python3-torchvision (only here, not to use the .imw).
"""
import argparse
import os
import re
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imw import DTYPES, quantise, write_imw  # noqa: E402

ARCHS = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
         "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
# Not part of a trunk: reported and skipped.
IGNORABLE = re.compile(r"^(module\.)?(pool\.|whiten\.|lwhiten\.)")
CIRTORCH_RESNET = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


class ConvertError(Exception):
    pass


def is_head(name):
    return name.startswith("fc.") or name.startswith("classifier.")


def expected_shapes(arch, classifier, num_classes=1000):
    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked") and (classifier or not is_head(k))}


def _strip(prefix):
    return lambda k: k[len(prefix):] if k.startswith(prefix) else None


def _cirtorch_resnet(prefix):
    def f(k):
        if not k.startswith(prefix):
            return None
        idx, _, rest = k[len(prefix):].partition(".")
        return f"{CIRTORCH_RESNET[idx]}.{rest}" if idx in CIRTORCH_RESNET and rest else None
    return f


def key_layouts(arch):
    yield "torchvision", _strip("")
    yield "module.", _strip("module.")
    yield "model.", _strip("model.")
    if arch.startswith("resnet"):
        yield "cirtorch ResNet (features.N)", _cirtorch_resnet("features.")
        yield "cirtorch ResNet (module.features.N)", _cirtorch_resnet("module.features.")
    yield "features.", _strip("features.")


def map_keys(arch, sd, trunk):
    """Pick the key layout that covers every trunk tensor; returns (layout, {new: old})."""
    best = None
    for label, f in key_layouts(arch):
        m = {}
        for k in sd:
            n = f(k)
            if n is not None and n not in m:
                m[n] = k
        hits = sum(1 for k in trunk if k in m)
        if hits == len(trunk):
            return label, m
        if best is None or hits > best[0]:
            best = (hits, label, m)
    hits, label, m = best
    missing = [k for k in trunk if k not in m]
    raise ConvertError(f"{len(missing)} of {len(trunk)} {arch} trunk tensors missing (closest key layout: "
                       f"{label}), first: {missing[0]}; checkpoint keys start with: {', '.join(list(sd)[:3])}")


def convert(arch, sd, out, classifier=True, source="", log=sys.stderr, dtype="f32"):
    if arch not in ARCHS:
        raise ConvertError(f"unknown arch {arch} (one of {' '.join(ARCHS)})")
    sd = {k: v for k, v in sd.items() if torch.is_tensor(v) and not k.endswith("num_batches_tracked")}
    layout, m = map_keys(arch, sd, expected_shapes(arch, False))
    num_classes = 0
    if classifier:
        head = "fc.weight" if arch.startswith("resnet") else "classifier.6.weight"
        if head not in m:
            raise ConvertError(f"no classifier tensor {head} in the checkpoint (use --no-classifier for a trunk-only "
                               "model, e.g. a retrieval net)")
        num_classes = sd[m[head]].shape[0]
    want = expected_shapes(arch, classifier, max(num_classes, 1))
    missing = [k for k in want if k not in m]
    if missing:
        raise ConvertError(f"{len(missing)} tensors of {arch} missing, first: {missing[0]}")
    used = {m[k] for k in want}
    rev = {o: n for n, o in m.items()}
    left = [k for k in sd if k not in used]
    skipped = [k for k in left if IGNORABLE.match(k) or (not classifier and is_head(rev.get(k, k)))]
    unexpected = [k for k in left if k not in skipped]
    if unexpected:
        raise ConvertError(f"{len(unexpected)} unexpected tensors for {arch}, first: {unexpected[0]} "
                           f"{tuple(sd[unexpected[0]].shape)}")
    tensors = []
    for k, shape in want.items():
        t = sd[m[k]].detach().float().cpu()
        if tuple(t.shape) != shape:
            raise ConvertError(f"tensor {k} has shape {tuple(t.shape)}, expected {shape} for {arch}")
        tensors.append((k, t.numpy()))
    notes = []
    for k in skipped:
        v = sd[k]
        desc = f"{k} {tuple(v.shape)}" + (f" = {v.flatten().tolist()}" if v.numel() <= 4 else "")
        notes.append(desc)
    if notes and log:
        print(f"pth2imw: left out (not part of the trunk): {'; '.join(notes)}", file=log)
    if not source:
        source = f"torchvision {arch} checkpoint ({layout} keys), converted by tools/pth2imw.py"
        pool = [k for k in skipped if k.endswith("pool.p")]
        if pool:
            source += f"; checkpoint GeM p={float(sd[pool[0]].flatten()[0]):.4g}"
    header = {
        "arch": arch,
        "input_order": "rgb",
        "input_scale": 1.0 / 255.0,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "bn_eps": 1e-05,
        "classes": num_classes,
        "source": source.replace("\n", " "),
    }
    write_imw(out, header, quantise(tensors, dtype))
    return header, tensors


def load_checkpoint(path, arch):
    obj = torch.load(path, map_location="cpu")
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        meta = obj.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("architecture"), str) and meta["architecture"] != arch:
            raise ConvertError(f"checkpoint meta says architecture {meta['architecture']}, --arch is {arch}")
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                return obj[key]
            if isinstance(obj.get(key), torch.nn.Module):
                return obj[key].state_dict()
        if any(torch.is_tensor(v) for v in obj.values()):
            return obj
    raise ConvertError(f"{path}: neither a state_dict, a checkpoint dict with one, nor a torch.nn.Module")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=ARCHS)
    ap.add_argument("--no-classifier", action="store_true", help="drop fc./classifier. tensors (classes=0)")
    ap.add_argument("--dtype", default="f32", choices=list(DTYPES),
                    help="weight storage: f32 (default), f16, bf16, int8 (per-channel scales; tools/requantise.py)")
    ap.add_argument("--source", default="", help="provenance text for the header")
    ap.add_argument("input")
    ap.add_argument("output")
    a = ap.parse_args()
    try:
        sd = load_checkpoint(a.input, a.arch)
        header, tensors = convert(a.arch, sd, a.output, classifier=not a.no_classifier, source=a.source, dtype=a.dtype)
    except ConvertError as e:
        raise SystemExit(f"pth2imw: {e}")
    print(f"wrote {a.output}: {a.arch}, {len(tensors)} tensors, classes={header['classes']}")


if __name__ == "__main__":
    main()
