#!/usr/bin/env python3
"""PyTorch reference activations for the parity tests (tests/test_parity.c).

For each torchvision architecture: a random-init model (fixed seed) with randomised
BatchNorm statistics (so BN folding bugs cannot hide behind identity BN), converted with
tools/pth2imw.py to tests/data/<arch>.imw, and for inputs of 64x64 and 97x131 the outputs of
every stage written to tests/data/<arch>_<H>x<W>.ref.imw:
  input [3,H,W]; ResNet: stem (conv1/bn1/relu/maxpool), stage1..stage4 (layer1..4),
  features (= layer4), pooled (global average), logits; VGG: block1..block4 (after each of the
  first four max pools), features (features[:-1], the last ReLU before the final max pool),
  logits (full model, AdaptiveAvgPool2d(7,7) + classifier).
Shapes drop the batch dimension ([C,H,W], [classes]). Model seed: 1000 + index of the arch in
pth2imw.ARCHS (the same whichever archs are named); input seed: H*1000+W.
Skips an architecture whose files are newer than this script and the converter.
usage: /usr/bin/python3 tests/ref_torch.py [arch ...]        (default: all 13)
Run time (2 cores, torch.set_num_threads(2)): about 45 s for all 13 from scratch.
"""
import os
import sys
import time

import torch
import torchvision

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tools"))
from imw import write_imw  # noqa: E402
from pth2imw import ARCHS, convert  # noqa: E402

OUT = os.path.join(here, "data")
SIZES = [(64, 64), (97, 131)]


def stages(model, arch, x):
    outs = [("input", x[0])]
    with torch.no_grad():
        if arch.startswith("resnet"):
            y = model.maxpool(model.relu(model.bn1(model.conv1(x))))
            outs.append(("stem", y[0]))
            for i in range(1, 5):
                y = getattr(model, f"layer{i}")(y)
                outs.append((f"stage{i}", y[0]))
            outs.append(("features", y[0]))
            outs.append(("pooled", torch.flatten(model.avgpool(y), 1)[0]))
        else:
            y, b = x, 0
            for layer in model.features[:-1]:
                y = layer(y)
                if isinstance(layer, torch.nn.MaxPool2d):
                    b += 1
                    outs.append((f"block{b}", y[0]))
            outs.append(("features", y[0]))
        outs.append(("logits", model(x)[0]))
    return [(n, t.numpy()) for n, t in outs]


def main():
    archs = sys.argv[1:] or ARCHS
    bad = [a for a in archs if a not in ARCHS]
    if bad:
        raise SystemExit(f"ref_torch: unknown arch {bad[0]} (one of {' '.join(ARCHS)})")
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    deps = max(os.path.getmtime(p) for p in (__file__, os.path.join(here, "..", "tools", "pth2imw.py"),
                                             os.path.join(here, "..", "tools", "imw.py")))
    for arch in archs:
        seed = ARCHS.index(arch)
        files = [os.path.join(OUT, f"{arch}.imw")] + [os.path.join(OUT, f"{arch}_{h}x{w}.ref.imw") for h, w in SIZES]
        if all(os.path.exists(f) and os.path.getmtime(f) > deps for f in files):
            continue
        t0 = time.time()
        torch.manual_seed(1000 + seed)
        model = getattr(torchvision.models, arch)(weights=None).eval()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.normal_(0.0, 0.1)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.normal_(0.0, 0.1)
        for h, w in SIZES:
            x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h * 1000 + w))
            write_imw(os.path.join(OUT, f"{arch}_{h}x{w}.ref.imw"), {"arch": arch, "kind": "reference"}, stages(model, arch, x))
        convert(arch, model.state_dict(), files[0], source=f"random init, torch.manual_seed({1000 + seed}), tests/ref_torch.py")
        print(f"ref_torch: {arch} ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
