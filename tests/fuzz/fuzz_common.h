/* Shared bits of the libFuzzer harnesses (tests/fuzz/fuzz_*.c).

   Each harness defines LLVMFuzzerTestOneInput. Built with clang -fsanitize=fuzzer it is a
   fuzzer; built with -DIMRET_FUZZ_REPLAY (any C99 compiler) it is a replay program that runs
   every file named on its command line once: `make test` replays tests/fuzz/regressions/
   that way, so a fixed crash stays fixed even where clang is missing.

   The file formats carry CRC-32s, which random mutations almost never match. The harnesses
   therefore run each input twice: as given (the checksum paths), and with its CRC fields
   recomputed (fuzz_fix_crc: the parsers behind the checksum). The CRC here is a plain
   bitwise implementation, independent of imret's slicing-by-4 one. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GNUC__) || defined(__clang__)
#define FUZZ_UNUSED __attribute__((unused)) /* not every harness uses every helper */
#else
#define FUZZ_UNUSED
#endif

static FUZZ_UNUSED uint32_t fuzz_crc32(uint32_t crc, const uint8_t *p, size_t n) {
    size_t i;
    int k;
    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (k = 0; k < 8; k++) crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}
static FUZZ_UNUSED void fuzz_wr32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }
static FUZZ_UNUSED void fuzz_wr64(uint8_t *p, uint64_t v) { fuzz_wr32(p, (uint32_t)v); fuzz_wr32(p + 4, (uint32_t)(v >> 32)); }
static FUZZ_UNUSED uint64_t fuzz_rd64(const uint8_t *p) {
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* A heap copy of the input (so ASan sees reads past its end) that the caller frees. */
static FUZZ_UNUSED uint8_t *fuzz_copy(const uint8_t *d, size_t n) {
    uint8_t *c = (uint8_t *)malloc(n ? n : 1);
    if (c && n) memcpy(c, d, n);
    return c;
}

#ifdef IMRET_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int main(int argc, char **argv) {
    int i, bad = 0;
    LLVMFuzzerInitialize(&argc, &argv);
    for (i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        uint8_t *buf;
        long n;
        if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
            printf("cannot read %s\n", argv[i]);
            if (f) fclose(f);
            bad = 1;
            continue;
        }
        buf = (uint8_t *)malloc((size_t)n + 1);
        if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { printf("cannot read %s\n", argv[i]); bad = 1; }
        else {
            LLVMFuzzerTestOneInput(buf, (size_t)n);
            printf("replayed %s (%ld bytes)\n", argv[i], n);
        }
        free(buf);
        fclose(f);
    }
    return bad;
}
#endif
#endif
