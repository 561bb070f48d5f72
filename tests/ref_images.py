#!/usr/bin/env python3
"""Reference images for tests/test_image.c, made with Pillow + numpy (never with imret).

Writes into tests/data/images/:
  orient_N.jpg      N = 1..8: one real photo stored with EXIF orientation N (pixels stored
                    so that the upright view is the same picture for every N)
  orient_N.png      what Pillow's ImageOps.exif_transpose shows for orient_N.jpg (lossless)
  rgba.png          a 40x50 RGBA image with varied alpha; rgba_expect.f32: the network
                    input for a torchvision model (RGB, /255, mean/std) after compositing
                    on grey 128, at the image's own size (no resize), CHW float32
  grey.png          a 33x47 greyscale PNG; grey_expect_bgr.f32: Keras BGR mean-subtracted input
  resize_src.png    a photo crop; resize_expect.png: Pillow BICUBIC (antialiased) resize to
                    longest side 97
  bomb.png          a valid PNG header declaring 65535x65535 pixels (decompression bomb)
  tiny.png          4x4 pixels
  empty.jpg         0 bytes;  notimage.jpg: text
Usage: /usr/bin/python3 tests/ref_images.py [photo]
"""
import os, struct, sys, zlib
import numpy as np
from PIL import Image, ImageOps

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "data", "images")
os.makedirs(out, exist_ok=True)
photo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "data", "ukbench", "images", "ukbench00004.jpg")
base = Image.open(photo).convert("RGB")
base = base.resize((base.width // 4, base.height // 4), Image.BILINEAR)  # 160x120: small and not symmetric

# Storage transform for orientation N: the inverse of what the viewer applies.
inverse = {1: None, 2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM,
           5: Image.TRANSPOSE, 6: Image.ROTATE_90, 7: Image.TRANSVERSE, 8: Image.ROTATE_270}
for n in range(1, 9):
    stored = base if inverse[n] is None else base.transpose(inverse[n])
    exif = Image.Exif()
    exif[0x0112] = n
    p = os.path.join(out, f"orient_{n}.jpg")
    stored.save(p, quality=95, exif=exif.tobytes())
    shown = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
    assert shown.size == base.size, (n, shown.size)
    shown.save(os.path.join(out, f"orient_{n}.png"))

mean = np.array([0.485, 0.456, 0.406], np.float32)
std = np.array([0.229, 0.224, 0.225], np.float32)
rng = np.random.default_rng(7)
rgba = rng.integers(0, 256, size=(50, 40, 4), dtype=np.uint8)
rgba[:10, :, 3] = 255
rgba[10:20, :, 3] = 0
Image.fromarray(rgba, "RGBA").save(os.path.join(out, "rgba.png"))
a = rgba[..., 3:4].astype(np.int64)
comp = (a * rgba[..., :3] + (255 - a) * 128 + 127) // 255
x = (comp.astype(np.float32) / 255.0 - mean) / std
x.transpose(2, 0, 1).astype("<f4").tofile(os.path.join(out, "rgba_expect.f32"))

grey = rng.integers(0, 256, size=(47, 33), dtype=np.uint8)
Image.fromarray(grey, "L").save(os.path.join(out, "grey.png"))
g = grey.astype(np.float32)
bgr_mean = np.array([103.939, 116.779, 123.68], np.float32)
np.stack([g - bgr_mean[0], g - bgr_mean[1], g - bgr_mean[2]]).astype("<f4").tofile(os.path.join(out, "grey_expect_bgr.f32"))

src = Image.open(photo).convert("RGB").crop((100, 50, 420, 290))  # 320x240
src.save(os.path.join(out, "resize_src.png"))
src.resize((97, 73), Image.BICUBIC).save(os.path.join(out, "resize_expect.png"))

def png_chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
with open(os.path.join(out, "bomb.png"), "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 65535, 65535, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b""))
Image.fromarray(rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)).save(os.path.join(out, "tiny.png"))
open(os.path.join(out, "empty.jpg"), "wb").close()
with open(os.path.join(out, "notimage.jpg"), "w") as f:
    f.write("this is a text file with a .jpg name\n" * 20)
print("wrote", out)
