#!/usr/bin/env python3
"""End-to-end indexing throughput: `./imret index` vs the same pipeline in PyTorch.

usage: /usr/bin/python3 bench/bench_e2e.py [--dir DIR] [--threads 2] [--rounds 3] [--imret ./imret]

Pipeline (both sides): read + decode the JPEG, resize (longest side 512), normalise (the
default Keras ResNet-50: BGR, mean subtraction), ResNet-50 trunk, GeM (p=3), L2, add to an
index (imret: the .imri file, saved atomically; PyTorch: a numpy array). PyTorch runs the
same network (Keras ResNet-50 v1: stride on the first 1x1, conv biases folded into BN,
eps 1e-3) with the same weights, torch.jit.script + torch.jit.optimize_for_inference under
no_grad, torch.set_num_threads(threads), PIL decode + BICUBIC resize; imret describes
images in parallel (one context per thread). Startup is excluded on both sides: throughput
= (N - 1) / (time for N images - time for the first image) -- imret: wall time of indexing
the folder minus wall time of indexing a folder holding only its first image; PyTorch: the
loop after a first warm-up image. Rounds alternate imret and PyTorch; medians are printed
with the load average before and after, since the machine may be shared.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tools"))


def load_avg():
    return open("/proc/loadavg").read().split()[0]


def imret_round(imret, folder, one, threads, tmp):
    times = []
    for src in (one, folder):
        out = os.path.join(tmp, "bench.imri")
        if os.path.exists(out):
            os.remove(out)
        t0 = time.perf_counter()
        subprocess.run([imret, "index", src, "-o", out, "--threads", str(threads)], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times[1] - times[0]


def build_torch(threads):
    import torch
    import torchvision
    from imw import read_imw

    torch.set_num_threads(threads)
    h, W = read_imw(os.path.join(here, "..", "weights", "resnet50.imw"))
    m = torchvision.models.resnet50()
    m.fc = torch.nn.Identity()
    m.avgpool = torch.nn.Identity()
    eps = float(h["bn_eps"])
    for layer in (m.layer2, m.layer3, m.layer4):  # Keras v1: stride on the first 1x1
        layer[0].conv1.stride = (2, 2)
        layer[0].conv2.stride = (1, 1)
    sd = m.state_dict()
    for k in sd:
        if k in W:
            sd[k] = torch.from_numpy(np.ascontiguousarray(W[k]))
    for name, mod in m.named_modules():  # conv bias b folded into the following BN
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eps = eps
            conv = name.replace("bn", "conv") if "bn" in name else name[:-1] + "0"
            if conv + ".bias" in W:
                sd[name + ".running_mean"] = sd[name + ".running_mean"] - torch.from_numpy(W[conv + ".bias"])
    m.load_state_dict(sd)

    class Trunk(torch.nn.Module):
        def __init__(self, r):
            super().__init__()
            self.r = r

        def forward(self, x):
            r = self.r
            x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
            return r.layer4(r.layer3(r.layer2(r.layer1(x))))

    net = Trunk(m).eval()
    with torch.no_grad():
        net = torch.jit.optimize_for_inference(torch.jit.script(net))
    return net


def torch_round(net, files):
    import torch
    from PIL import Image

    mean = np.array([103.939, 116.779, 123.68], np.float32).reshape(3, 1, 1)
    index = []

    def one(path):
        im = Image.open(path).convert("RGB")
        s = 512 / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BICUBIC)
        x = np.asarray(im, np.float32).transpose(2, 0, 1)[::-1] - mean  # BGR
        with torch.no_grad():
            f = net(torch.from_numpy(np.ascontiguousarray(x))[None])
            g = f.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)[0]
            g = g / (g.norm() + 1e-6)
        index.append(g.numpy())

    one(files[0])  # warm-up: first image (oneDNN plans, allocations)
    t0 = time.perf_counter()
    for f in files[1:]:
        one(f)
    np.stack(index)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=os.path.join(here, "..", "..", "shared", "data", "ukbench", "images"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--imret", default=os.path.join(here, "..", "imret"))
    a = ap.parse_args()
    files = sorted(os.path.join(a.dir, f) for f in os.listdir(a.dir) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    n = len(files)
    tmp = tempfile.mkdtemp(prefix="bench_e2e")
    one = os.path.join(tmp, "one")
    os.makedirs(one)
    shutil.copy(files[0], one)
    print(f"bench-e2e: {n} images from {a.dir}, {a.threads} threads, {a.rounds} rounds; load average {load_avg()}")
    net = build_torch(a.threads)
    ti, tt = [], []
    for r in range(a.rounds):
        ti.append(imret_round(a.imret, a.dir, one, a.threads, tmp))
        tt.append(torch_round(net, files))
        print(f"  round {r + 1}: imret {(n - 1) / ti[-1]:.2f} img/s, PyTorch {(n - 1) / tt[-1]:.2f} img/s (load {load_avg()})")
    mi, mt = (n - 1) / statistics.median(ti), (n - 1) / statistics.median(tt)
    print(f"median: imret {mi:.2f} images/s, PyTorch (script + optimize_for_inference) {mt:.2f} images/s: "
          f"ratio imret/PyTorch {mi / mt:.2f}x (target >= 1.5x); load average {load_avg()}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
