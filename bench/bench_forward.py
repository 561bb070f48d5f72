#!/usr/bin/python3
"""Forward-pass benchmark: imret vs ONNX Runtime (CPU) vs PyTorch, side by side, one run.

usage: /usr/bin/python3 bench/bench_forward.py [--rounds 2] [--runs 12] [--threads 1,2]
                                                [--models resnet50,resnet18,vgg16] [--no-anchors]
                                                [--md build/bench_forward.md] [--quick]

What it does (DESIGN.md section 8, issue 4):
 1. builds build/bench_forward, build/peak_fma, build/membw if missing or older than their
    sources, and measures this machine's fp32 FMA peak (1 and 2 threads) and memory read
    bandwidth in the same invocation;
 2. prepares (cached in build/bench_models/, regenerated when torch/torchvision, this script,
    bench/torch_runner.py or the converter change) torchvision ResNet-50, ResNet-18 and VGG16
    with random init under a fixed seed: the state_dict (.pth), the .imw made from it by
    tools/pth2imw.py (VGG16 features: a trunk-only .imw, --no-classifier) and ONNX exports
    (opset 13) of the full model and the trunk; the multiply-adds of every Conv2d and Linear are
    counted with forward hooks on the torchvision model (independently of imret);
 3. measures batch 1, 224x224, fp32, 1 and 2 threads, for every configuration
      ResNet-50 full, ResNet-18 full, VGG16 features (trunk: conv5_3+ReLU, before the last
      pool, what imret_forward returns), VGG16 full (logits; imret_forward_logits),
    each runtime in its own process (imret: build/bench_forward; ORT: node bench/ort_runner.js;
    PyTorch: bench/torch_runner.py), interleaved: every round runs every configuration on every
    runtime (runtime order rotated per round and configuration) so drift hits all alike; each
    process does 2 (imret) / 3 (anchors) warm-up passes then --runs timed ones; medians are over
    all timed runs of all rounds;
 4. reads each child's peak RSS (its VmHWM), the cores it used during the timed runs (process
    CPU time / wall time), and keeps the machine honest: before each child it waits (bounded)
    for an idle machine; while the child runs it samples /proc/stat, the child's CPU time and
    its own every 50 ms, so the CPU time of other processes is known around every timed run
    (each child reports its runs' CLOCK_MONOTONIC start times); runs during which others used
    more than 0.25 core are dropped, a process left with too few clean runs is run again
    (bounded by --retries / --wait-budget), rows that still lack runs are marked (busy!), and
    the notes say how many runs were dropped and what others used during the kept ones;
 5. checks that the three runtimes computed the same thing (L2 norm and first outputs agree);
 6. prints the tables and writes them as markdown to build/bench_forward.md.

"full" for ResNet is the logits (trunk + global average pool + fc). GFLOP/s = 2 x MACs of the
convolutions and linear layers / median latency; % peak = that / measured FMA peak for the same
thread count. Needs the anchors of tools/bench_deps.sh (Debian python3-torch,
python3-torchvision; npm onnxruntime-node in bench/node_modules); a missing anchor is reported
as n/a with the reason, imret is still measured.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
BUILD = os.path.join(ROOT, "build")
MODELS = os.path.join(BUILD, "bench_models")
PY = "/usr/bin/python3"
sys.path.insert(0, BENCH)
import torch_runner  # noqa: E402  (model construction and input pattern shared with the child)

HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
RUNTIMES = ("imret", "ort", "torch")
LABEL = {"imret": "imret", "ort": "ONNX Runtime", "torch": "PyTorch"}
NICE = {"resnet50": "ResNet-50", "resnet18": "ResNet-18", "vgg16": "VGG16"}
QUIET_WARN = 0.03  # others' CPU share (of all cores) above which a measurement is flagged
SAMPLE_S = 0.05  # how often /proc/stat and the child's CPU time are sampled during a measurement
MIN_WINDOW_MS = 250.0  # a timed run is judged on at least this much of samples around it (ticks are 10 ms)
DIRTY_CORES = 0.25  # a timed run during which other processes used more than this many cores is dropped


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- build tools
def build_tools(cc):
    stb = os.environ.get("STB", "/usr/include/stb")
    jobs = [
        ("bench_forward", [os.path.join(BENCH, "bench_forward.c"), os.path.join(ROOT, "imret.h")],
         [cc, "-O2", "-fopenmp", "-I" + ROOT, "-I" + stb, os.path.join(BENCH, "bench_forward.c"), "-o",
          os.path.join(BUILD, "bench_forward"), "-lm"]),
        ("peak_fma", [os.path.join(ROOT, "tools", "peak_fma.c")],
         [cc, "-O2", "-fopenmp", os.path.join(ROOT, "tools", "peak_fma.c"), "-o", os.path.join(BUILD, "peak_fma")]),
        ("membw", [os.path.join(ROOT, "tools", "membw.c")],
         [cc, "-O2", "-fopenmp", os.path.join(ROOT, "tools", "membw.c"), "-o", os.path.join(BUILD, "membw")]),
        ("core_pingpong", [os.path.join(BENCH, "core_pingpong.c")],
         [cc, "-O2", "-pthread", os.path.join(BENCH, "core_pingpong.c"), "-o", os.path.join(BUILD, "core_pingpong")]),
    ]
    os.makedirs(BUILD, exist_ok=True)
    for name, srcs, cmd in jobs:
        out = os.path.join(BUILD, name)
        if os.path.exists(out) and all(os.path.getmtime(out) >= os.path.getmtime(s) for s in srcs):
            continue
        log("build: " + " ".join(cmd))
        subprocess.run(cmd, check=True)


def measure_limit(name):
    """Run build/peak_fma or build/membw on every core; returns (stdout, others' CPU share)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(NCPU))
    _, _, st = run_child([os.path.join(BUILD, name)], env)
    return st["stdout"], st["others_frac"]


def peak_fma():
    """{threads: GFLOP/s}, best vector width, from build/peak_fma; plus others' CPU share."""
    txt, others = measure_limit("peak_fma")
    best, lines = {}, []
    for line in txt.splitlines():
        m = re.search(r"FMA\s+(\S+)\s+1 thread:\s+([\d.]+) GFLOP/s\s+(\d+) threads:\s+([\d.]+)", line)
        if m:
            lines.append(line.strip())
            best[1] = max(best.get(1, 0), float(m.group(2)))
            best[int(m.group(3))] = max(best.get(int(m.group(3)), 0), float(m.group(4)))
    if 1 not in best:
        raise SystemExit("peak_fma printed nothing usable:\n" + txt)
    return best, lines, others


def core_round_trip():
    """ns for a cache line to go from CPU 0 to CPU 1 and back (build/core_pingpong), or None: on
    a VM the two vCPUs may share a cache at one time and sit far apart at another, which moves
    every multi-threaded row (a Zen 4 VM: 55-75 vs 340-390 ns; imret 36.6 vs 51.5 ms)."""
    if NCPU < 2:
        return None
    try:
        out = subprocess.run([os.path.join(BUILD, "core_pingpong"), "50000"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"round trip: ([\d.]+) ns", out)
    return float(m.group(1)) if m else None


def membw():
    txt, others = measure_limit("membw")
    txt = txt.strip()
    m = re.search(r"1 thread: ([\d.]+) GB/s\s+(\d+) threads: ([\d.]+) GB/s", txt)
    return ((float(m.group(1)), int(m.group(2)), float(m.group(3))) if m else None), txt, others


# ---------------------------------------------------------------------------- models
def file_sha(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()[:12]


def count_macs(model, size):
    """Multiply-adds of every Conv2d and Linear, from forward hooks on the torchvision model."""
    import torch
    total = [0]

    def conv_hook(mod, inp, out):
        total[0] += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]

    def lin_hook(mod, inp, out):
        total[0] += out.numel() * mod.in_features

    hooks = []
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, torch.nn.Linear):
            hooks.append(mod.register_forward_hook(lin_hook))
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return total[0]


def prepare_models(archs, size):
    """Cached model files + MACs; returns the manifest dict."""
    import torch
    import torchvision
    os.makedirs(MODELS, exist_ok=True)
    key = {
        "torch": torch.__version__, "torchvision": torchvision.__version__, "seed": torch_runner.SEED, "size": size,
        "runner": file_sha(os.path.join(BENCH, "torch_runner.py")),
        "pth2imw": file_sha(os.path.join(ROOT, "tools", "pth2imw.py")),
        "imw": file_sha(os.path.join(ROOT, "tools", "imw.py")),
        "script": file_sha(os.path.abspath(__file__)),
    }
    mpath = os.path.join(MODELS, "manifest.json")
    man = {}
    if os.path.exists(mpath):
        with open(mpath) as f:
            man = json.load(f)
        if man.get("key") != key:
            log("bench models: inputs changed, regenerating")
            man = {}
    man["key"] = key
    man.setdefault("models", {})
    for arch in archs:
        entry = man["models"].get(arch, {})
        files = [os.path.join(MODELS, n) for n in entry.get("files", [])]
        if entry and all(os.path.exists(p) for p in files):
            continue
        t0 = time.time()
        log("bench models: preparing %s (seeded random init, .pth -> .imw, ONNX export)" % arch)
        model = torch_runner.build(arch, "full")
        pth = os.path.join(MODELS, arch + ".pth")
        torch.save(model.state_dict(), pth)
        entry = {"files": [], "macs": {}, "imw": {}, "onnx": {}}
        imw = os.path.join(MODELS, arch + ".imw")
        subprocess.run([PY, os.path.join(ROOT, "tools", "pth2imw.py"), "--arch", arch, "--source",
                        "imret bench: torchvision %s random init seed %d" % (arch, torch_runner.SEED), pth, imw],
                       check=True, stdout=subprocess.DEVNULL)
        entry["imw"]["full"] = arch + ".imw"
        if arch.startswith("vgg"):  # trunk-only file so imret's RSS is not charged for the classifier
            imwt = os.path.join(MODELS, arch + "_trunk.imw")
            subprocess.run([PY, os.path.join(ROOT, "tools", "pth2imw.py"), "--arch", arch, "--no-classifier",
                            "--source", "imret bench: torchvision %s trunk, random init seed %d" % (arch, torch_runner.SEED),
                            pth, imwt], check=True, stdout=subprocess.DEVNULL)
            entry["imw"]["features"] = arch + "_trunk.imw"
        else:
            entry["imw"]["features"] = arch + ".imw"
        x = torch.from_numpy(torch_runner.make_input(size))
        for mode in ("full", "features"):
            m = torch_runner.build(arch, mode)
            entry["macs"][mode] = count_macs(m, size)
            onnx = os.path.join(MODELS, "%s_%s.onnx" % (arch, mode))
            with torch.no_grad():
                torch.onnx.export(m, x, onnx, opset_version=13, input_names=["input"], output_names=["output"],
                                  do_constant_folding=True)
            entry["onnx"][mode] = os.path.basename(onnx)
        os.remove(pth)  # the .imw and .onnx files are what the runtimes read; torch rebuilds from the seed
        entry["files"] = sorted(set(list(entry["imw"].values()) + list(entry["onnx"].values())))
        man["models"][arch] = entry
        with open(mpath + ".tmp", "w") as f:
            json.dump(man, f, indent=1)
        os.replace(mpath + ".tmp", mpath)
        log("bench models: %s ready in %.0f s" % (arch, time.time() - t0))
    with open(mpath + ".tmp", "w") as f:
        json.dump(man, f, indent=1)
    os.replace(mpath + ".tmp", mpath)
    return man


# ---------------------------------------------------------------------------- measuring
def proc_stat():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    v += [0] * (10 - len(v))
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy / HZ, (v[3] + v[4]) / HZ, v[7] / HZ


def wait_quiet(max_wait, window=0.5, need=3, limit=0.05):
    """Wait until `need` consecutive windows show < limit of the CPU busy (nothing else running:
    this process sleeps). Returns seconds waited (max_wait when the machine never got quiet)."""
    t0 = time.monotonic()
    ok = 0
    while time.monotonic() - t0 < max_wait:
        b0, _, s0 = proc_stat()
        time.sleep(window)
        b1, _, s1 = proc_stat()
        ok = ok + 1 if (b1 - b0 + s1 - s0) / (window * NCPU) < limit else 0
        if ok >= need:
            return time.monotonic() - t0
    return max_wait


def proc_cpu(pid):
    """utime + stime (s) of a process, all its threads; None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / HZ
    except (OSError, IndexError, ValueError):
        return None


def run_child(cmd, env=None):
    """Run one measurement process while sampling, every SAMPLE_S, the machine's busy time
    (/proc/stat), the child's CPU time (/proc/PID/stat) and this process's own; returns
    (json dict or None, error text, stats dict with "samples" = [(t_ms, busy_s, steal_s,
    child_s, self_s)] on CLOCK_MONOTONIC, the clock the children time their runs with)."""
    import tempfile
    import threading

    def me():
        t = os.times()
        return t.user + t.system
    b0, i0, s0 = proc_stat()
    self0 = me()
    w0 = time.monotonic()
    errf = tempfile.TemporaryFile()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, env=env, cwd=ROOT)
    samples, last = [], [0.0]
    stop = threading.Event()

    def sampler():
        while True:
            c = proc_cpu(p.pid)
            if c is None:
                break
            last[0] = max(last[0], c)
            b, _, st = proc_stat()
            samples.append((time.monotonic() * 1e3, b, st, c, me()))
            if stop.wait(SAMPLE_S):
                break
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    out = p.stdout.read()
    stop.set()
    th.join()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - w0
    b1, i1, s1 = proc_stat()
    self1 = me()
    child_cpu = ru.ru_utime + ru.ru_stime
    samples.append((time.monotonic() * 1e3, b1, s1, child_cpu, self1))  # encloses the last timed run
    others = max(0.0, (b1 - b0) - child_cpu - (self1 - self0))
    stats = {"wall_s": wall, "maxrss_kb": ru.ru_maxrss, "child_cpu_s": child_cpu,
             "others_frac": others / (wall * NCPU), "steal_frac": (s1 - s0) / (wall * NCPU),
             "idle_frac": (i1 - i0) / (wall * NCPU), "samples": samples}
    out = out.decode(errors="replace")
    stats["stdout"] = out
    errf.seek(0)
    err = errf.read().decode(errors="replace")
    errf.close()
    res = None
    for line in out.splitlines():
        if line.startswith("json "):
            res = json.loads(line[5:])
    if p.returncode != 0 or res is None:
        return None, ("exit %d: %s" % (p.returncode, (err or out).strip()[-400:])), stats
    return res, "", stats


def classify_runs(samples, starts, times):
    """Cores used by other processes around each timed run (window of >= MIN_WINDOW_MS of
    samples enclosing it); None for a run the samples do not enclose."""
    import bisect
    ts = [x[0] for x in samples]
    out = []
    for s, d in zip(starts, times):
        i = bisect.bisect_right(ts, s) - 1
        j = bisect.bisect_left(ts, s + d)
        if i < 0 or j >= len(ts):
            out.append(None)
            continue
        while ts[j] - ts[i] < MIN_WINDOW_MS and (i > 0 or j < len(ts) - 1):
            if i > 0:
                i -= 1
            if j < len(ts) - 1 and ts[j] - ts[i] < MIN_WINDOW_MS:
                j += 1
        a, b = samples[i], samples[j]
        win = (b[0] - a[0]) / 1e3
        if win <= 0:
            out.append(None)
            continue
        out.append(max(0.0, (b[1] - a[1]) - (b[3] - a[3]) - (b[4] - a[4])) / win)
    return out


def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def anchors_available(no_anchors):
    why = {}
    if no_anchors:
        return {"ort": "skipped (--no-anchors)", "torch": "skipped (--no-anchors)"}
    if not shutil.which("node"):
        why["ort"] = "node not found (tools/bench_deps.sh)"
    elif not os.path.exists(os.path.join(BENCH, "node_modules", "onnxruntime-node", "package.json")):
        why["ort"] = "bench/node_modules/onnxruntime-node missing (run tools/bench_deps.sh)"
    chk = subprocess.run([PY, "-c", "import torch, torchvision"], capture_output=True, text=True)
    if chk.returncode:
        why["torch"] = "%s cannot import torch/torchvision: %s" % (PY, chk.stderr.strip().splitlines()[-1:])
    return why


def torch_info():
    """torch versions / BLAS from a child (this process stays small: it does not import torch)."""
    out = subprocess.run([PY, os.path.join(BENCH, "torch_runner.py"), "--info"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("json "):
            d = json.loads(line[5:])
            lib = d.get("libblas", "")
            d["blas_impl"] = ("Debian reference BLAS (netlib, libblas3)" if "/blas/libblas" in lib else
                              "OpenBLAS" if "openblas" in lib else "BLIS" if "blis" in lib else
                              "ATLAS" if "atlas" in lib else "MKL" if "mkl" in lib else lib)
            return d
    return None


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "imret.h", "bench/bench_forward.c"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (imret.h modified)" if dirty else "")
    except OSError:
        return "?"


def agree(a, b):
    """Relative difference of two output summaries (L2 norm and first values, scaled by rms)."""
    if not a or not b or a["n"] != b["n"]:
        return float("inf")
    rms = max(a["l2"] / max(a["n"], 1) ** 0.5, 1e-30)
    d = abs(a["l2"] - b["l2"]) / max(a["l2"], 1e-30)
    for x, y in zip(a["head"], b["head"]):
        d = max(d, abs(x - y) / rms)
    return d


# ---------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    ap.add_argument("--runs", type=int, default=12, help="timed runs per process and round (default 12)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--models", default="resnet50,resnet18,vgg16")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--no-anchors", action="store_true", help="measure imret only")
    ap.add_argument("--quick", action="store_true", help="1 round of 5 runs (smoke test, not for the README)")
    ap.add_argument("--md", default=os.path.join(BUILD, "bench_forward.md"))
    ap.add_argument("--json", default=os.path.join(BUILD, "bench_forward.json"))
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--retries", type=int, default=2,
                    help="re-measure a process during which other processes used > %d%%%% of the CPU (default 2)" % (100 * QUIET_WARN))
    ap.add_argument("--max-wait", type=float, default=30.0,
                    help="seconds to wait for an idle machine before each process (default 30)")
    ap.add_argument("--wait-budget", type=float, default=150.0,
                    help="total seconds of such waiting; past it no more waiting nor retries (default 150)")
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prepare:
        prepare_models(args.models.split(","), args.size)
        return 0
    if args.quick:
        args.rounds, args.runs = 1, 5
    threads = [int(t) for t in args.threads.split(",")]
    archs = args.models.split(",")
    t_start = time.time()

    build_tools(args.cc)
    missing = anchors_available(args.no_anchors)
    for k, v in missing.items():
        log("anchor %s: n/a: %s" % (LABEL[k], v))
    tinfo = torch_info() if "torch" not in missing else None
    ort_version = None
    if "ort" not in missing:
        with open(os.path.join(BENCH, "node_modules", "onnxruntime-node", "package.json")) as f:
            ort_version = json.load(f)["version"]

    # model files are made in a child so that this process never holds torch (it forks every
    # measurement; a small parent keeps the machine quiet and the children's accounting clean)
    subprocess.run([PY, os.path.abspath(__file__), "--prepare", "--models", args.models, "--size", str(args.size)], check=True)
    with open(os.path.join(MODELS, "manifest.json")) as f:
        man = json.load(f)
    log("measuring peak FMA and memory bandwidth ...")
    wait_quiet(args.max_wait)
    peak, peak_lines, peak_others = peak_fma()
    wait_quiet(args.max_wait)
    bw, bw_line, bw_others = membw()
    log("  " + "\n  ".join(peak_lines + [bw_line]))
    limit_busy = []
    if peak_others > QUIET_WARN:
        limit_busy.append("peak FMA (others used %.0f%% of the CPU)" % (100 * peak_others))
    if bw_others > QUIET_WARN:
        limit_busy.append("memory bandwidth at the start (others used %.0f%%)" % (100 * bw_others))

    configs = []
    for arch in archs:
        modes = ["features", "full"] if arch.startswith("vgg") else ["full"]
        for mode in modes:
            for t in threads:
                configs.append((arch, mode, t))
    runtimes = [r for r in RUNTIMES if r not in missing]
    res = {(c, r): {"times": [], "rss": [], "base": [], "cores": [], "others": [], "steal": [], "out": None, "err": "",
                    "planned": 0, "dropped": 0, "unjudged": 0, "others_kept": [], "round_trip_ns": []}
           for c in configs for r in RUNTIMES}
    env_base = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env_base.pop(k, None)
    simd = "?"
    waits, retries = [], []
    for rnd in range(args.rounds):
        for ci, cfg in enumerate(configs):
            arch, mode, t = cfg
            entry = man["models"][arch]
            order = runtimes[(rnd + ci) % len(runtimes):] + runtimes[:(rnd + ci) % len(runtimes)]
            for rt in order:
                r = res[(cfg, rt)]
                if r["err"]:
                    continue
                env = dict(env_base)
                if rt == "imret":
                    env["IMRET_BENCH_JSON"] = "1"
                    cmd = [os.path.join(BUILD, "bench_forward"), os.path.join(MODELS, entry["imw"][mode]), str(args.size),
                           str(t), str(args.runs), "logits" if mode == "full" else "features"]
                elif rt == "ort":
                    cmd = ["node", os.path.join(BENCH, "ort_runner.js"), os.path.join(MODELS, entry["onnx"][mode]), str(t),
                           str(args.runs), "3", str(args.size)]
                else:
                    env["OMP_NUM_THREADS"] = str(t)  # what torch.set_num_threads sets too; keeps OpenMP from spawning more
                    env["OPENBLAS_NUM_THREADS"] = str(t)  # when libblas.so.3 is OpenBLAS (pthread): no extra pool
                    cmd = [PY, os.path.join(BENCH, "torch_runner.py"), arch, mode, str(t), str(args.runs), "3", str(args.size)]
                need = max(1, (args.runs * 5 + 5) // 6)  # clean runs wanted from this round (10 of 12)
                got = 0
                for attempt in range(args.retries + 1):
                    allowed = max(2.0, min(args.max_wait, args.wait_budget - sum(waits)))
                    waited = wait_quiet(allowed)
                    if waited >= allowed:
                        log("  machine still busy after %.0f s; measuring anyway" % waited)
                    waits.append(waited)
                    rtt = core_round_trip() if t > 1 else None
                    out, err, st = run_child(cmd, env)
                    if out is None:
                        r["err"] = err
                        log("  %s %s %dt %s: FAILED %s" % (arch, mode, t, rt, err))
                        break
                    # judge every timed run on the others' CPU time around it; keep the clean ones
                    oc = classify_runs(st["samples"], out.get("starts", []), out["times"])
                    oc += [None] * (len(out["times"]) - len(oc))
                    keep = [i for i, c in enumerate(oc) if c is None or c <= DIRTY_CORES]
                    r["unjudged"] += sum(1 for c in oc if c is None)
                    r["planned"] += len(out["times"])
                    r["times"] += [out["times"][i] for i in keep]
                    r["others_kept"] += [oc[i] for i in keep if oc[i] is not None]
                    r["dropped"] += len(out["times"]) - len(keep)
                    got += len(keep)
                    # VmHWM of the child's own image: ru_maxrss of a forked child also counts the
                    # parent's RSS at fork time, so it is only the fallback
                    r["rss"].append(out.get("vmhwm_kb") or st["maxrss_kb"])
                    if out.get("rss_base_kb"):
                        r["base"].append(out["rss_base_kb"])
                    r["cores"].append(out["cpu_ms"] / sum(out["times"]))
                    r["others"].append(st["others_frac"])
                    r["steal"].append(st["steal_frac"])
                    r["out"] = out["out"]
                    if rt == "imret":
                        simd = out.get("simd", simd)
                    if rtt is not None:
                        r["round_trip_ns"].append(rtt)
                    log("  round %d  %-8s %-8s %dt  %-6s median %8.2f ms  kept %2d/%d runs  (others' CPU %4.1f%% of the "
                        "process's life, steal %4.1f%%%s)" % (
                            rnd + 1, arch, mode, t, rt, median([out["times"][i] for i in keep] or out["times"]), len(keep),
                            len(out["times"]), 100 * st["others_frac"], 100 * st["steal_frac"],
                            ", CPU 0<->1 round trip %.0f ns before it" % rtt if rtt is not None else ""))
                    if got >= need:
                        break
                    if attempt < args.retries and sum(waits) < args.wait_budget:
                        retries.append("%s %s %dt %s" % (arch, mode, t, rt))
                        log("  round %d  %-8s %-8s %dt  %-6s only %d clean runs; once more" % (rnd + 1, arch, mode, t, rt, got))
                    else:
                        break

    # memory bandwidth again: on a shared VM host it moves with the neighbours' load
    wait_quiet(args.max_wait)
    bw_end, bw_end_line, bw_end_others = membw()
    if bw_end_others > QUIET_WARN:
        limit_busy.append("memory bandwidth at the end (others used %.0f%%)" % (100 * bw_end_others))
    log("  " + bw_end_line)
    bw_end_txt = "%.1f / %.1f GB/s" % (bw_end[0], bw_end[2]) if bw_end else "n/a"

    # ------------------------------------------------------------------ report
    rows, rows2, bad_outputs, busy_rows = [], [], [], []
    all_others, all_steal, kept_others = [], [], []
    n_planned = sum(r["planned"] for r in res.values())
    n_dropped = sum(r["dropped"] for r in res.values())
    n_unjudged = sum(r["unjudged"] for r in res.values())
    min_kept = min(20, (4 * args.rounds * args.runs + 4) // 5)
    for cfg in configs:
        arch, mode, t = cfg
        flop = 2.0 * man["models"][arch]["macs"][mode]
        pk = peak.get(t) or peak[1] * t
        med = {}
        for rt in RUNTIMES:
            r = res[(cfg, rt)]
            med[rt] = median(r["times"]) if r["times"] else None
            all_others += r["others"]
            all_steal += r["steal"]
            kept_others += r["others_kept"]
        for rt in ("ort", "torch"):
            if res[(cfg, rt)]["out"] and res[(cfg, "imret")]["out"]:
                d = agree(res[(cfg, "imret")]["out"], res[(cfg, rt)]["out"])
                if d > 1e-3:
                    bad_outputs.append("%s %s %dt: imret vs %s differ (%.2g)" % (arch, mode, t, LABEL[rt], d))

        def ms(rt):
            if med[rt] is not None:
                return "%.1f" % med[rt]
            return "n/a"

        def ratio(a, b):
            return "%.2f" % (med[a] / med[b]) if med[a] and med[b] else "n/a"

        def gf(rt):
            if not med[rt]:
                return "n/a"
            g = flop / med[rt] / 1e6
            return "%.0f (%.0f%%)" % (g, 100 * g / pk)

        name = "%s %s" % (NICE.get(arch, arch), "features" if mode == "features" else "full")
        if any(len(res[(cfg, rt)]["times"]) < min_kept for rt in runtimes):
            name += " (busy!)"
            busy_rows.append("%s %dt" % (name[:-8], t))
        rows.append([name, str(t), ms("imret"), ms("ort"), ms("torch"), ratio("imret", "ort"), ratio("imret", "torch"),
                     "%.2f" % (flop / 1e9), gf("imret"), gf("ort"), gf("torch")])

        def rss(rt):
            v = res[(cfg, rt)]["rss"]
            return "%.0f" % (max(v) / 1024) if v else "n/a"

        def cores(rt):
            v = res[(cfg, rt)]["cores"]
            return "%.2f" % median(v) if v else "n/a"

        def kept(rt):
            return str(len(res[(cfg, rt)]["times"])) if rt in runtimes else "n/a"
        oth = [x for rt in RUNTIMES for x in res[(cfg, rt)]["others_kept"]]
        stl = [x for rt in RUNTIMES for x in res[(cfg, rt)]["steal"]]
        wfile = os.path.join(MODELS, man["models"][arch]["imw"][mode])
        rows2.append([name, str(t), "%.0f" % (os.path.getsize(wfile) / 2 ** 20), rss("imret"), rss("ort"), rss("torch"),
                      "%s / %s / %s" % (cores("imret"), cores("ort"), cores("torch")),
                      "%s / %s / %s" % (kept("imret"), kept("ort"), kept("torch")),
                      "%.1f%%" % (100 * sum(oth) / len(oth) / NCPU) if oth else "n/a",
                      "%.1f%%" % (100 * max(stl)) if stl else "n/a"])

    n_runs = args.rounds * args.runs
    quiet_max = max(all_others) if all_others else 0.0
    quiet_mean = sum(all_others) / len(all_others) if all_others else 0.0
    steal_max = max(all_steal) if all_steal else 0.0
    kept_mean = sum(kept_others) / len(kept_others) / NCPU if kept_others else 0.0
    kept_max = max(kept_others) / NCPU if kept_others else 0.0
    quiet = n_dropped == 0 and quiet_max <= QUIET_WARN and steal_max <= QUIET_WARN
    head = [
        "Forward pass, batch 1, %dx%d, fp32, medians of the timed runs kept (%d per runtime and row: %d interleaved "
        "rounds x %d, each runtime in its own process, warm; runs during which other processes used > %.2g core are "
        "dropped). %s." % (args.size, args.size, n_runs, args.rounds, args.runs, DIRTY_CORES,
                           datetime.datetime.now().strftime("%Y-%m-%d %H:%M")),
        "Machine: %s, %d cores (%s); imret kernels: %s; imret %s." % (cpu_name(), NCPU, platform.machine(), simd, git_rev()),
        "Physical limits measured in this run: fp32 FMA peak %s; memory read bandwidth %s." % (
            ", ".join("%.1f GFLOP/s at %d thread%s" % (peak[k], k, "s" if k > 1 else "") for k in sorted(peak)),
            "%.1f GB/s 1 core, %.1f GB/s %d cores (start of run; %s at the end)" % (bw[0], bw[2], bw[1], bw_end_txt)
            if bw else "n/a"),
        "ONNX Runtime: %s." % ("npm onnxruntime-node %s, CPU EP, intra-op threads = threads, inter-op 1, sequential, "
                                "graph optimisation all; model from torch.onnx.export opset 13" % ort_version
                                if ort_version else "n/a: " + missing.get("ort", "")),
        "PyTorch: %s." % ("%s, torch.jit.optimize_for_inference(torch.jit.script(model)) under no_grad, "
                           "torch.set_num_threads(threads); convolutions in oneDNN %s (prim::mkldnn_convolution), linear layers as "
                           "aten::matmul in the system BLAS: BLAS_INFO=%s, libblas.so.3 -> %s = %s; ATen CPU capability %s" % (
                               tinfo["version"], tinfo["onednn"], tinfo["blas"], tinfo["libblas"], tinfo["blas_impl"], tinfo["cap"])
                           if tinfo else "n/a: " + missing.get("torch", "")),
        "Models: torchvision architectures, random init (seed %d), the same weights in all three runtimes. "
        "\"features\" = trunk only (VGG16: conv5_3+ReLU before the last pool, imret_forward); \"full\" = logits "
        "(imret_forward_logits). GFLOP = 2 x multiply-adds of all convolutions and linear layers (counted with "
        "forward hooks on the torchvision model); %% = of the FMA peak at the same thread count." % torch_runner.SEED,
    ]
    th = ["model", "thr", "imret ms", "ORT ms", "PyTorch ms", "imret/ORT", "imret/PyTorch", "GFLOP",
          "imret GFLOP/s (% peak)", "ORT GFLOP/s (% peak)", "PyTorch GFLOP/s (% peak)"]
    th2 = ["model", "thr", "weights MB (.imw)", "imret peak RSS MB", "ORT peak RSS MB", "PyTorch peak RSS MB",
           "cores used imret / ORT / PyTorch", "runs kept imret / ORT / PyTorch", "others' CPU in kept runs",
           "steal (max)"]
    notes = []
    if quiet:
        notes.append("Machine quiet: no timed run dropped; other processes used at most %.1f%% of the CPU (mean %.1f%%) "
                     "and hypervisor steal at most %.1f%% over any measurement process." % (
                         100 * quiet_max, 100 * quiet_mean, 100 * steal_max))
    else:
        notes.append("Machine busy at times: %d of %d timed runs were dropped because other processes used > %.2g core "
                     "during them (judged from /proc/stat and the child's CPU time sampled every %.0f ms); in the kept "
                     "runs other processes used on average %.1f%% of the CPU (worst run %.1f%%); hypervisor steal at "
                     "most %.1f%%." % (n_dropped, n_planned, DIRTY_CORES, 1e3 * SAMPLE_S, 100 * kept_mean,
                                       100 * kept_max, 100 * steal_max))
        if busy_rows:
            notes.append("WARNING: rows marked (busy!) kept fewer than %d runs for a runtime even after retries: %s; "
                         "re-run on a quiet machine." % (min_kept, ", ".join(busy_rows)))
    rtts = [x for r in res.values() for x in r["round_trip_ns"]]
    if rtts:
        notes.append("A cache line's round trip between CPU 0 and CPU 1, measured before each multi-threaded process "
                     "(bench/core_pingpong.c): %.0f-%.0f ns. On a VM it changes with where the host places the vCPUs "
                     "(sharing a cache: ~50-80 ns), and multi-threaded rows measured far apart are not comparable with "
                     "rows measured close; the per-process values are in the log and the JSON." % (min(rtts), max(rtts)))
    if n_unjudged:
        notes.append("%d timed runs could not be judged (no CPU samples around them) and were kept." % n_unjudged)
    if limit_busy:
        notes.append("WARNING: the machine was busy while measuring " + "; ".join(limit_busy) + ".")
    notes.append("Before each process the script waited for an idle machine (%.0f s in all, longest %.0f s); %d "
                 "process(es) were run again for lack of clean runs%s." % (
                     sum(waits), max(waits) if waits else 0, len(retries), (": " + "; ".join(retries)) if retries else ""))
    notes.append("Peak RSS is VmHWM of each measurement process: it includes each runtime's own baseline "
                 "(node + ORT library about %s MB before the session, python + torch about %s MB before the model)." % (
                     _base(res, "ort"), _base(res, "torch")))
    tgt = [(cfg, median(res[(cfg, "imret")]["times"]) / median(res[(cfg, "ort")]["times"])) for cfg in configs
           if cfg[0] in ("resnet50", "vgg16") and res[(cfg, "imret")]["times"] and res[(cfg, "ort")]["times"]]
    if tgt:
        notes.append("Target imret/ORT <= 0.8 (ResNet-50 and VGG16, every thread count): met in %d of %d rows (worst %.2f)." % (
            sum(1 for _, r in tgt if r <= 0.8), len(tgt), max(r for _, r in tgt)))
    for cfg in configs:
        if cfg[0] == "resnet50" and res[(cfg, "imret")]["rss"]:
            wfile = os.path.join(MODELS, man["models"]["resnet50"]["imw"][cfg[1]])
            notes.append("Target imret peak RSS <= 1.3x the weight file (ResNet-50): %.2fx (%.0f MB / %.0f MB)." % (
                max(res[(cfg, "imret")]["rss"]) * 1024 / os.path.getsize(wfile), max(res[(cfg, "imret")]["rss"]) / 1024,
                os.path.getsize(wfile) / 2 ** 20))
            break
    if bad_outputs:
        notes.append("WARNING: outputs differ: " + "; ".join(bad_outputs))
    elif runtimes != ["imret"]:
        notes.append("Outputs agree across runtimes (L2 norm and first values within 1e-3 relative).")
    for rt in ("ort", "torch"):
        errs = sorted({res[(c, rt)]["err"] for c in configs if res[(c, rt)]["err"]})
        for e in errs:
            notes.append("%s failed: %s" % (LABEL[rt], e))
    notes.append("Total benchmark time %.0f s." % (time.time() - t_start))

    def md_table(hdr, body):
        out = ["| " + " | ".join(hdr) + " |", "|" + "|".join("---" if i < 1 else "---:" for i in range(len(hdr))) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(out)

    def txt_table(hdr, body):
        w = [max(len(x) for x in col) for col in zip(hdr, *body)]
        fmt = lambda r: "  ".join((c.ljust(w[i]) if i == 0 else c.rjust(w[i])) for i, c in enumerate(r))  # noqa: E731
        return "\n".join([fmt(hdr), "  ".join("-" * x for x in w)] + [fmt(r) for r in body])

    print()
    print("\n".join(head))
    print()
    print(txt_table(th, rows))
    print()
    print(txt_table(th2, rows2))
    print()
    print("\n".join(notes))
    md = "\n\n".join(["\n".join("- " + h for h in head), md_table(th, rows), md_table(th2, rows2),
                      "\n".join("- " + n for n in notes)]) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
    with open(args.md, "w") as f:
        f.write(md)
    with open(args.json, "w") as f:
        json.dump({"peak_gflops": peak, "limits_busy": limit_busy, "membw": bw_line, "membw_end": bw_end_line, "ort_version": ort_version, "torch": tinfo,
                   "results": {"%s/%s/%d/%s" % (c + (rt,)): {k: v for k, v in res[(c, rt)].items()}
                               for c in configs for rt in RUNTIMES},
                   "macs": {a: man["models"][a]["macs"] for a in archs}}, f, indent=1)
    print("\nwrote %s and %s" % (os.path.relpath(args.md, ROOT), os.path.relpath(args.json, ROOT)))
    return 0 if not bad_outputs else 1


def _base(res, rt):
    v = [x for (c, r), d in res.items() if r == rt for x in d["base"]]
    return "%.0f" % (median(v) / 1024) if v else "?"


if __name__ == "__main__":
    sys.exit(main())
