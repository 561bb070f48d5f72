"""Read and write imret `.imw` tensor files (weights/FORMAT.md), with numpy only.

write_imw(path, header, tensors)  header: dict of str -> value; tensors: list of (name, array)
read_imw(path) -> (header dict, dict name -> float32 ndarray)

The writer goes through a temporary file in the same directory and os.replace(), so a
crash never leaves a partial file under the final name.
"""
import os
import struct
import tempfile
import zlib

import numpy as np

MAGIC = b"\x89IMRETW\n"
RECORD = 96
DTYPES = {1: ("<f4", 4), 2: ("<f2", 2), 3: (None, 2), 4: ("i1", 1)}


def _fmt(v):
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_imw(path, header, tensors):
    text = "".join(f"{k}={_fmt(v)}\n" for k, v in header.items()).encode()
    assert b"\0" not in text and 0 < len(text) <= 65536
    assert 0 < len(tensors) <= 4096
    table = (32 + len(text) + 7) // 8 * 8
    off = (table + RECORD * len(tensors) + 63) // 64 * 64
    records, blobs, seen = [], [], set()
    for name, arr in tensors:
        a = np.ascontiguousarray(np.asarray(arr, dtype="<f4"))
        if a.ndim == 0:
            a = a.reshape(1)
        assert 1 <= a.ndim <= 4, (name, a.shape)
        assert name not in seen and 0 < len(name) <= 47, name
        assert all(c.isalnum() or c in "_." for c in name), name
        assert np.isfinite(a).all(), f"{name} has NaN/inf"
        seen.add(name)
        shape = list(a.shape) + [0] * (4 - a.ndim)
        records.append(name.encode().ljust(48, b"\0") + struct.pack("<II4IQQQ", 1, a.ndim, *shape, off, a.nbytes, 0))
        blobs.append((off, a.tobytes()))
        off = (off + a.nbytes + 63) // 64 * 64
    size = blobs[-1][0] + len(blobs[-1][1])
    buf = bytearray(size)
    buf[0:8] = MAGIC
    struct.pack_into("<III", buf, 8, 1, len(text), len(tensors))
    struct.pack_into("<Q", buf, 24, size)
    buf[32:32 + len(text)] = text
    buf[table:table + RECORD * len(records)] = b"".join(records)
    for o, b in blobs:
        buf[o:o + len(b)] = b
    struct.pack_into("<I", buf, 20, zlib.crc32(memoryview(buf)[24:]))
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".imw-")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(buf)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_imw(path):
    buf = open(path, "rb").read()
    if buf[:8] != MAGIC:
        raise ValueError(f"{path}: not an .imw file")
    version, hlen, n, crc = struct.unpack_from("<IIII", buf, 8)
    (size,) = struct.unpack_from("<Q", buf, 24)
    if version != 1 or size != len(buf) or zlib.crc32(memoryview(buf)[24:]) != crc:
        raise ValueError(f"{path}: bad version, size or checksum")
    header = {}
    for line in buf[32:32 + hlen].decode().splitlines():
        k, _, v = line.partition("=")
        header[k] = v
    table = (32 + hlen + 7) // 8 * 8
    tensors = {}
    for i in range(n):
        r = table + RECORD * i
        name = buf[r:r + 48].rstrip(b"\0").decode()
        dtype, ndim, *shape = struct.unpack_from("<II4I", buf, r + 48)
        off, nbytes = struct.unpack_from("<QQ", buf, r + 72)
        shape = shape[:ndim]
        raw = buf[off:off + nbytes]
        if dtype == 3:  # bf16
            a = (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4")
        else:
            a = np.frombuffer(raw, DTYPES[dtype][0]).astype("<f4")
        tensors[name] = a.reshape(shape)
    return header, tensors
