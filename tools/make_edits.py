#!/usr/bin/env python3
"""Make a near-duplicate evaluation set of known photo edits with Pillow.

usage: /usr/bin/python3 tools/make_edits.py SRC_DIR OUT_DIR
For every image in SRC_DIR (flat folder): the original re-encoded, and copies rotated by
90/180/270 degrees, transposed, mirrored and flipped -- each also shrunk to 75 % and JPEG
re-encoded at quality 80, so the copies are not pixel-exact. OUT_DIR/groundtruth.tsv links
every file to the other files made from the same source (format of ../shared/data). With
UKBench as the source, the other photos of the same object are hard negatives."""
import os
import sys

from PIL import Image

EDITS = {"orig": None, "rot90": Image.ROTATE_90, "rot180": Image.ROTATE_180, "rot270": Image.ROTATE_270,
         "transpose": Image.TRANSPOSE, "mirror": Image.FLIP_LEFT_RIGHT, "flip": Image.FLIP_TOP_BOTTOM}


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    groups = []
    for name in sorted(os.listdir(src)):
        if not name.lower().endswith((".jpg", ".jpeg", ".png")):
            continue
        base = os.path.splitext(name)[0]
        im = Image.open(os.path.join(src, name)).convert("RGB")
        files = []
        for edit, op in EDITS.items():
            e = im if op is None else im.transpose(op)
            if op is not None:
                e = e.resize((e.width * 3 // 4, e.height * 3 // 4), Image.BILINEAR)
            fn = f"{base}_{edit}.jpg"
            e.save(os.path.join(out, fn), quality=80)
            files.append(fn)
        groups.append(files)
    with open(os.path.join(out, "groundtruth.tsv"), "w") as f:
        f.write("query\trelevant\n")
        for files in groups:
            for fn in files:
                f.write(fn + "\t" + ",".join(x for x in files if x != fn) + "\n")
    print(f"make_edits: {sum(map(len, groups))} files from {len(groups)} sources in {out}")


if __name__ == "__main__":
    main()
