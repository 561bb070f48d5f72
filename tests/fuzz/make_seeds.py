"""Generate the fuzz seed corpora: small valid files of every input kind plus a few
deterministic mutations of each (truncations, flipped header bytes). Nothing here is
committed; `make fuzz` runs it into build-fuzz/seeds/<target>/.

usage: make_seeds.py OUTDIR SEEDGEN   (SEEDGEN: the built tests/fuzz/seedgen.c)
Needs numpy and PIL; python3-faiss is used for extra FAISS files when present."""
import io
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from imw import write_imw  # noqa: E402

out, seedgen = sys.argv[1], sys.argv[2]
rng = random.Random(8)


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def mutations(target, name, data, header=64):
    """Truncations and byte flips, biased to the header where the parsers branch."""
    for cut in (1, len(data) // 2, len(data) - 1):
        if 0 < cut < len(data):
            put(target, f"{name}.cut{cut}", data[:cut])
    for k in range(6):
        b = bytearray(data)
        pos = rng.randrange(min(len(b), header)) if k < 4 else rng.randrange(len(b))
        b[pos] ^= 1 << rng.randrange(8)
        put(target, f"{name}.flip{k}", bytes(b))


# --- images: every format stb_image reads, EXIF orientations, grey/alpha/palette -------
img = Image.fromarray((np.arange(24 * 17 * 3) % 251).astype(np.uint8).reshape(17, 24, 3))
for fmt, ext, mode in (("JPEG", "jpg", "RGB"), ("PNG", "png", "RGB"), ("PNG", "png", "RGBA"),
                       ("PNG", "png", "L"), ("PNG", "png", "P"), ("PNG", "png", "LA"), ("BMP", "bmp", "RGB"),
                       ("GIF", "gif", "P"), ("TGA", "tga", "RGB"), ("PPM", "ppm", "RGB"), ("PPM", "pgm", "L"),
                       ("JPEG", "jpg", "L")):
    buf = io.BytesIO()
    im = img.convert(mode)
    im.save(buf, fmt) if fmt != "PNG" or mode != "P" else im.save(buf, fmt, optimize=True)
    data = buf.getvalue()
    put("image", f"img_{mode}.{ext}", data)
    mutations("image", f"img_{mode}.{ext}", data)
for o in range(1, 9):
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = o
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=50)
    put("image", f"exif{o}.jpg", buf.getvalue())
buf = io.BytesIO()
img.save(buf, "JPEG", progressive=True)
put("image", "progressive.jpg", buf.getvalue())
# a PNG header declaring 65535 x 65535 (decompression bomb) and a tall thin image
png = bytearray(open(os.path.join(out, "image", "img_RGB.png"), "rb").read())
png[16:24] = (65535).to_bytes(4, "big") * 2
put("image", "bomb.png", bytes(png))
buf = io.BytesIO()
Image.new("RGB", (1, 300), (9, 9, 9)).save(buf, "PNG")
put("image", "thin.png", buf.getvalue())
put("image", "hdr.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2 +X 2\n" + bytes([128, 64, 32, 129] * 4))

# --- .imw: partial models (a ResNet-18 stem, a VGG11 first conv), and header variants ---
npr = np.random.default_rng(1)
hdr = {"arch": "resnet18", "input_scale": 1 / 255.0, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
       "bn_eps": 1e-5, "classes": 0, "input_order": "rgb", "source": "fuzz seed"}
stem = [("conv1.weight", npr.standard_normal((64, 3, 7, 7)).astype(np.float32))]
stem += [(f"bn1.{p}", npr.random(64).astype(np.float32) + 0.5) for p in ("weight", "bias", "running_mean", "running_var")]
vgg = [("features.0.weight", npr.standard_normal((64, 3, 3, 3)).astype(np.float32)),
       ("features.0.bias", npr.standard_normal(64).astype(np.float32))]
with tempfile.TemporaryDirectory() as td:
    for name, h, t in (("resnet18_stem.imw", hdr, stem), ("vgg11_first.imw", dict(hdr, arch="vgg11"), vgg),
                       ("keras_first.imw", dict(hdr, arch="keras_resnet50", input_order="bgr", bn_eps=1e-3), vgg),
                       ("one_tensor.imw", dict(hdr, classes=1000), [("fc.bias", np.zeros(3, np.float32))])):
        p = os.path.join(td, name)
        write_imw(p, h, t)
        data = open(p, "rb").read()
        put("model", name, data)
        mutations("model", name, data, header=32 + 256 + 96 * len(t))

# --- .imri, whitening, hash, FAISS: written by imret's own savers (seedgen) -------------
with tempfile.TemporaryDirectory() as td:
    subprocess.run([seedgen, td], check=True, stdout=subprocess.DEVNULL)
    for f in sorted(os.listdir(td)):
        data = open(os.path.join(td, f), "rb").read()
        target = "faiss" if f.startswith("faiss_") else "index" if f.endswith(".imri") else "desc"
        put(target, f, data)
        mutations(target, f, data, header={"index": 96, "desc": 64, "faiss": 45}[target])
try:  # FAISS's own writer, when installed
    import faiss
    with tempfile.TemporaryDirectory() as td:
        ix = faiss.IndexFlatIP(6)
        ix.add(npr.standard_normal((3, 6)).astype(np.float32))
        faiss.write_index(ix, os.path.join(td, "a"))
        put("faiss", "faiss_py_flatip", open(os.path.join(td, "a"), "rb").read())
        ib = faiss.IndexBinaryFlat(64)
        ib.add(npr.integers(0, 256, (4, 8), dtype=np.uint8))
        faiss.write_index_binary(ib, os.path.join(td, "b"))
        put("faiss", "faiss_py_binary", open(os.path.join(td, "b"), "rb").read())
except ImportError:
    pass
for t in sorted(os.listdir(out)):
    print(f"seeds {t}: {len(os.listdir(os.path.join(out, t)))} files")
