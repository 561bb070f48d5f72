"""PyTorch anchor for bench/bench_forward.py (run with Debian's /usr/bin/python3).

usage: torch_runner.py ARCH full|features THREADS RUNS WARMUP [SIZE=224]

Builds torchvision.models.ARCH with the benchmark's fixed seed (the same weights that
bench_forward.py converted to .imw and exported to ONNX), trunk only for "features" (VGG:
conv5_3+ReLU, i.e. features[:-1], as imret_forward; ResNet: up to layer4), compiles it with
torch.jit.optimize_for_inference(torch.jit.script(model.eval())) under torch.no_grad() and
times RUNS forward passes after WARMUP ones at batch 1 on the benchmark's deterministic input.
Prints one line "json {...}": every timed run (ms) and its start (CLOCK_MONOTONIC ms), process CPU time of the timed runs,
RSS before the model was built, and a summary of the output (n, sum, L2, first 8 values).

Eager PyTorch is not the anchor: Debian's torch falls back to the reference BLAS for batch-1
1x1 convolutions; optimize_for_inference routes convolutions to oneDNN (MKL-DNN).
"""
import json
import os
import sys
import time

SEED = 0


def rss_kb(key="VmRSS"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def make_input(size):
    """Same pattern as bench/bench_forward.c: ((i * 2654435761) mod 2^32 % 1000) / 500 - 1."""
    import numpy as np
    i = np.arange(3 * size * size, dtype=np.uint64)
    v = ((i * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) % np.uint64(1000)
    return (v.astype(np.float32) / np.float32(500.0) - np.float32(1.0)).reshape(1, 3, size, size)


def build(arch, mode):
    """The benchmark model: torchvision ARCH, random init with the fixed seed, eval mode."""
    import torch
    import torchvision
    torch.manual_seed(SEED)
    model = getattr(torchvision.models, arch)()
    model.eval()
    if mode == "features":
        if arch.startswith("vgg"):
            model = model.features[:-1]  # imret's VGG feature map is taken before the last pool
        else:
            model = torch.nn.Sequential(*list(model.children())[:-2])  # up to layer4
        model.eval()
    elif mode != "full":
        raise SystemExit("mode must be full or features")
    return model


def summary(y):
    import numpy as np
    y = np.asarray(y, dtype=np.float64).ravel()
    return {"n": int(y.size), "sum": float(y.sum()), "l2": float(np.sqrt((y * y).sum())),
            "head": [float(v) for v in y[:8]]}


def info():
    """Versions and build configuration, one json line (the orchestrator does not import torch)."""
    import re
    import torch
    import torchvision
    cfg = torch.__config__.show()

    def grab(pat):
        m = re.search(pat, cfg)
        return m.group(1) if m else "?"
    try:
        import ctypes.util
        libblas = ctypes.util.find_library("blas") or "?"
    except Exception:  # noqa: BLE001
        libblas = "?"
    real = "?"
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"):
        p = os.path.join(d, "libblas.so.3")
        if os.path.exists(p):
            real = os.path.realpath(p)
            break
    print("json " + json.dumps({
        "version": torch.__version__, "torchvision": torchvision.__version__, "blas": grab(r"BLAS_INFO=([^,\s]+)"),
        "lapack": grab(r"LAPACK_INFO=([^,\s]+)"), "onednn": grab(r"MKL-DNN v([\d.]+)"),
        "cap": grab(r"CPU capability usage: (\S+)"), "libblas": real, "libblas_name": libblas,
        "mkldnn_enabled": bool(torch.backends.mkldnn.is_available()),
    }), flush=True)


def main():
    if sys.argv[1:2] == ["--info"]:
        return info()
    arch, mode = sys.argv[1], sys.argv[2]
    threads, runs, warmup = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    size = int(sys.argv[6]) if len(sys.argv) > 6 else 224
    import torch
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    base = rss_kb()
    x = torch.from_numpy(make_input(size))
    with torch.no_grad():
        model = build(arch, mode)
        net = torch.jit.optimize_for_inference(torch.jit.script(model))
        del model
        for _ in range(warmup):
            y = net(x)
        times, starts = [], []
        c0 = time.process_time()
        for _ in range(runs):
            s0 = time.monotonic()
            t0 = time.perf_counter()
            y = net(x)
            times.append((time.perf_counter() - t0) * 1e3)
            starts.append(s0 * 1e3)  # CLOCK_MONOTONIC ms, as the orchestrator's samples
        c1 = time.process_time()
    print("json " + json.dumps({
        "times": times, "starts": starts, "cpu_ms": (c1 - c0) * 1e3, "threads": torch.get_num_threads(),
        "rss_base_kb": base, "vmhwm_kb": rss_kb("VmHWM"), "out": summary(y.numpy()),
        "version": torch.__version__,
    }), flush=True)


if __name__ == "__main__":
    main()
