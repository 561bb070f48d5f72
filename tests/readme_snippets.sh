#!/bin/sh
# The README's C examples must compile against imret.h as written: every ```c block is
# extracted; preprocessor lines stay at file scope, the rest becomes the body of main().
set -eu
cd "$(dirname "$0")/.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
awk -v dir="$T" '
    /^```c$/ { n++; f = dir "/snippet" n ".c"; inblk = 1; body = ""; head = ""; next }
    /^```$/ && inblk { print head "int main(void) {\n" body "return 0;\n}" > f; close(f); inblk = 0; next }
    inblk && /^#/ { head = head $0 "\n"; next }
    inblk { body = body $0 "\n" }
' README.md
count=0
for f in "$T"/snippet*.c; do
    [ -e "$f" ] || { echo "no C blocks in README.md"; exit 1; }
    ${CC:-cc} -std=c99 -D_DEFAULT_SOURCE -Wall -Werror=implicit-function-declaration -Werror=incompatible-pointer-types \
        -Werror=int-conversion -Wno-unused -I. -I"${STB:-/usr/include/stb}" "$f" -o "$f.bin" -lm
    count=$((count + 1))
done
echo "$count README C example(s) compile"
