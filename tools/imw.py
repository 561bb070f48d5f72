"""Read and write imret `.imw` tensor files (weights/FORMAT.md), with numpy only.

write_imw(path, header, tensors)
    header:  dict key -> value; floats are written with repr() (round-trips exactly),
             lists/tuples comma-separated (mean=0.485,0.456,0.406), anything else with str().
    tensors: list of (name, array) written as float32 (dtype 1), or (name, array, dtype) with
             dtype 1 f32, 2 f16, 3 bf16 (round to nearest even), 4 i8 (array must hold
             integers in -127..127); in the given order, each at a 64-byte aligned offset.
             CRC-32 (zlib) covers bytes [24, file_size).

quantise(tensors, dtype) -> tensors for write_imw
    dtype "f32" | "f16" | "bf16" | "int8". Convolution and linear weights (2-D and 4-D
    tensors) are stored in dtype; 1-D tensors (biases, BatchNorm, scales: 0.2 % of a ResNet)
    stay f32. int8: symmetric per output channel, q = round(w / s), s = max|w[oc]| / 127, with
    s in the f32 tensor "<name>.scale" [out] (s = 1 for an all-zero channel).

dequantise(tensors) -> OrderedDict with every i8 tensor multiplied by its "<name>.scale"
    (scales dropped): the f32 weights a loader sees.
    The file goes through a temporary file in the same directory, fsync and os.replace(),
    so a crash never leaves a partial file under the final name.

read_imw(path) -> (header, tensors)
    header:  dict key -> str (values as written, unparsed);
    tensors: OrderedDict name -> float32 ndarray in file order (f16/bf16/i8 widened to f32;
             i8 values are returned unscaled, their scales are the "<name>.scale" tensor).
    Every field is validated as the C loader does (magic, version, sizes, CRC, names, dtypes,
    shapes, alignment, bounds, overlaps); a bad file raises ImwError naming the problem.
"""
import os
import struct
import tempfile
import zlib
from collections import OrderedDict

import numpy as np

MAGIC = b"\x89IMRETW\n"
VERSION = 1
RECORD = 96
MAX_HEADER = 65536
MAX_TENSORS = 4096
DTYPE_SIZE = {1: 4, 2: 2, 3: 2, 4: 1}
DTYPES = {"f32": 1, "f16": 2, "bf16": 3, "int8": 4}
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


class ImwError(ValueError):
    pass


def _align(x, a):
    return (x + a - 1) // a * a


def _fmt(v):
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt(x) for x in v)
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def _check_name(name):
    if not (0 < len(name) <= 47) or not set(name) <= NAME_CHARS:
        raise ImwError(f"bad tensor name {name!r} (1..47 characters of [A-Za-z0-9_.])")


def _encode(name, a, dtype):
    """float32 array -> little-endian bytes of the on-disk dtype."""
    if dtype == 1:
        return a.tobytes()
    if dtype == 2:
        with np.errstate(over="ignore"):
            h = a.astype("<f2")
        if not np.isfinite(h).all():
            raise ImwError(f"{name}: values beyond the f16 range (max |x| {np.abs(a).max():g} > 65504)")
        return h.tobytes()
    if dtype == 3:
        u = a.view("<u4").astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # round to nearest even
        return u.astype("<u2").tobytes()
    if dtype == 4:
        if not (np.all(a == np.round(a)) and np.abs(a).max() <= 127):
            raise ImwError(f"{name}: i8 tensors must hold integers in -127..127")
        return a.astype("i1").tobytes()
    raise ImwError(f"{name}: unknown dtype {dtype}")


def quantise(tensors, dtype):
    if dtype not in DTYPES:
        raise ImwError(f"dtype {dtype!r}: one of {' '.join(DTYPES)}")
    out = []
    for name, a in tensors:
        a = np.asarray(a, dtype=np.float32)
        if a.ndim < 2 or dtype == "f32":
            out.append((name, a, 1))
        elif dtype != "int8":
            out.append((name, a, DTYPES[dtype]))
        else:
            m = np.abs(a.reshape(a.shape[0], -1)).max(axis=1).astype(np.float64)
            s = np.where(m > 0, m / 127.0, 1.0).astype(np.float32)
            q = np.clip(np.round(a / s.reshape((-1,) + (1,) * (a.ndim - 1))), -127, 127)
            out.append((name, q, 4))
            out.append((name + ".scale", s, 1))
    return out


def dequantise(tensors):
    out = OrderedDict()
    for name, a in tensors.items():
        if name.endswith(".scale") and name[:-6] in tensors:
            continue
        s = tensors.get(name + ".scale")
        out[name] = a if s is None else (a * s.reshape((-1,) + (1,) * (a.ndim - 1))).astype(np.float32)
    return out


def write_imw(path, header, tensors):
    lines = []
    for k, v in header.items():
        k, v = str(k), _fmt(v)
        if not k or "=" in k or "\n" in k or "\n" in v or "\0" in k + v:
            raise ImwError(f"bad header entry {k!r}={v!r}")
        lines.append(f"{k}={v}\n")
    text = "".join(lines).encode("utf-8")
    if not 0 < len(text) <= MAX_HEADER:
        raise ImwError(f"header is {len(text)} bytes, must be 1..{MAX_HEADER}")
    if not 0 < len(tensors) <= MAX_TENSORS:
        raise ImwError(f"{len(tensors)} tensors, must be 1..{MAX_TENSORS}")
    table = _align(32 + len(text), 8)
    off = _align(table + RECORD * len(tensors), 64)
    records, blobs, seen = [], [], set()
    for entry in tensors:
        name, arr = entry[0], entry[1]
        dtype = entry[2] if len(entry) > 2 else 1
        _check_name(name)
        if name in seen:
            raise ImwError(f"duplicate tensor name {name}")
        seen.add(name)
        a = np.ascontiguousarray(np.asarray(arr, dtype="<f4"))
        if a.ndim == 0:
            a = a.reshape(1)
        if not 1 <= a.ndim <= 4 or 0 in a.shape:
            raise ImwError(f"{name}: shape {a.shape} (need 1..4 dims, each >= 1)")
        if not np.isfinite(a).all():
            raise ImwError(f"{name} has NaN/inf")
        shape = list(a.shape) + [0] * (4 - a.ndim)
        raw = _encode(name, a, dtype)
        records.append(name.encode().ljust(48, b"\0") + struct.pack("<II4IQQQ", dtype, a.ndim, *shape, off, len(raw), 0))
        blobs.append((off, raw))
        off = _align(off + len(raw), 64)
    size = blobs[-1][0] + len(blobs[-1][1])
    buf = bytearray(size)
    buf[0:8] = MAGIC
    struct.pack_into("<III", buf, 8, VERSION, len(text), len(tensors))
    struct.pack_into("<Q", buf, 24, size)
    buf[32:32 + len(text)] = text
    buf[table:table + RECORD * len(records)] = b"".join(records)
    for o, raw in blobs:
        buf[o:o + len(raw)] = raw
    struct.pack_into("<I", buf, 20, zlib.crc32(memoryview(buf)[24:]) & 0xFFFFFFFF)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".imw-", suffix=".tmp")
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
    try:  # make the rename durable too
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def read_imw(path):
    with open(path, "rb") as f:
        buf = f.read()

    def bad(msg):
        raise ImwError(f"{path}: {msg}")

    if len(buf) < 32 or buf[:8] != MAGIC:
        bad("not an .imw file (bad magic)")
    version, hlen, n, crc = struct.unpack_from("<IIII", buf, 8)
    (size,) = struct.unpack_from("<Q", buf, 24)
    if version != VERSION:
        bad(f"version {version}, only {VERSION} is supported")
    if size != len(buf):
        bad(f"file_size field {size} but the file has {len(buf)} bytes (truncated?)")
    if zlib.crc32(memoryview(buf)[24:]) & 0xFFFFFFFF != crc:
        bad("CRC-32 mismatch (corrupt file)")
    if not 1 <= hlen <= MAX_HEADER:
        bad(f"header_bytes {hlen} out of 1..{MAX_HEADER}")
    if not 1 <= n <= MAX_TENSORS:
        bad(f"n_tensors {n} out of 1..{MAX_TENSORS}")
    table = _align(32 + hlen, 8)
    data_start = table + RECORD * n
    if data_start > size:
        bad("tensor table runs past the end of the file")
    raw_header = buf[32:32 + hlen]
    if b"\0" in raw_header:
        bad("NUL in the text header")
    try:
        text = raw_header.decode("utf-8")
    except UnicodeDecodeError:
        bad("text header is not UTF-8")
    header = {}
    for line in text.split("\n"):
        if not line:
            continue
        k, eq, v = line.partition("=")
        if not eq or not k:
            bad(f"header line {line!r} is not key=value")
        header[k] = v
    tensors = OrderedDict()
    spans = []
    for i in range(n):
        r = table + RECORD * i
        rawname = buf[r:r + 48]
        name = rawname.split(b"\0", 1)[0]
        if len(name) > 47 or rawname[len(name):].strip(b"\0"):
            bad(f"tensor {i}: name not NUL-padded")
        name = name.decode("ascii", "replace")
        try:
            _check_name(name)
        except ImwError as e:
            bad(f"tensor {i}: {e}")
        if name in tensors:
            bad(f"duplicate tensor name {name}")
        dtype, ndim, *shape = struct.unpack_from("<II4I", buf, r + 48)
        off, nbytes, reserved = struct.unpack_from("<QQQ", buf, r + 72)
        if dtype not in DTYPE_SIZE:
            bad(f"{name}: unknown dtype {dtype}")
        if not 1 <= ndim <= 4 or any(s < 1 for s in shape[:ndim]) or any(shape[ndim:]):
            bad(f"{name}: bad shape ndim={ndim} {shape}")
        shape = shape[:ndim]
        count = int(np.prod(shape, dtype=np.uint64))
        if nbytes != count * DTYPE_SIZE[dtype]:
            bad(f"{name}: nbytes {nbytes} != {count} elements x {DTYPE_SIZE[dtype]}")
        if off % 64 or off < data_start or off + nbytes > size:
            bad(f"{name}: offset {off} (+{nbytes}) not 64-aligned or outside [{data_start}, {size})")
        if reserved:
            bad(f"{name}: reserved field is not 0")
        spans.append((off, off + nbytes, name))
        raw = buf[off:off + nbytes]
        if dtype == 1:
            a = np.frombuffer(raw, "<f4").copy()
        elif dtype == 2:
            a = np.frombuffer(raw, "<f2").astype("<f4")
        elif dtype == 3:
            a = (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4")
        else:
            a = np.frombuffer(raw, "i1").astype("<f4")
        tensors[name] = a.reshape(shape)
    spans.sort()
    for (_, e0, n0), (s1, _, n1) in zip(spans, spans[1:]):
        if s1 < e0:
            bad(f"tensors {n0} and {n1} overlap")
    return header, tensors
