#!/usr/bin/env python3
"""Make a small set of game-sprite-like RGBA images with known duplicates (for the
dedup_sprites example test).

usage: /usr/bin/python3 tests/make_sprites.py OUT_DIR
Eight distinct 32x32 pixel-art sprites (random symmetric 8x8 patterns in a random palette,
transparent background, scaled x4 with nearest neighbour). Sprites 0-2 also get a copy at
twice the size (nearest neighbour) and sprite 3 a copy re-saved with one pixel changed.
Prints the expected groups, one per line (file names separated by spaces)."""
import os
import random
import sys

from PIL import Image


def sprite(rng):
    pal = [tuple(rng.randrange(256) for _ in range(3)) + (255,) for _ in range(3)]
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    for y in range(8):
        for x in range(4):
            if rng.random() < 0.6:
                c = rng.choice(pal)
                im.putpixel((x, y), c)
                im.putpixel((7 - x, y), c)
    return im.resize((32, 32), Image.NEAREST)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(7)
    groups = []
    for i in range(8):
        im = sprite(rng)
        name = f"sprite{i}.png"
        im.save(os.path.join(out, name))
        if i < 3:
            im.resize((64, 64), Image.NEAREST).save(os.path.join(out, f"sprite{i}_x2.png"))
            groups.append([name, f"sprite{i}_x2.png"])
        elif i == 3:
            im2 = im.copy()
            im2.putpixel((0, 0), (255, 0, 0, 255))
            im2.save(os.path.join(out, f"sprite{i}_edit.png"))
            groups.append([name, f"sprite{i}_edit.png"])
    for g in groups:
        print(" ".join(g))


if __name__ == "__main__":
    main()
