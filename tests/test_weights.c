/* Bad weight files: every corruption gets its specific imret_result and a message naming
   the problem; nothing crashes or leaks (run under ASan/UBSan by make test-asan).

   usage: test_weights VALID_RESNET18.imw   (tests/data/resnet18.imw from tests/ref_torch.py)
   Corruptions that should be caught past the CRC re-seal the CRC, so the deeper check is
   the one exercised. */
#define IMRET_IMPLEMENTATION
#include "imret.h"

static int failures, checks;
static uint8_t *orig;
static size_t orig_size;

static uint8_t *copy(size_t n) {
    uint8_t *b = (uint8_t *)malloc(n ? n : 1);
    memcpy(b, orig, n < orig_size ? n : orig_size);
    return b;
}
static void reseal(uint8_t *b, size_t n) { imret__wr32(b + 20, imret__crc32(0, b + 24, n - 24)); }

/* Byte offset of the table record of tensor `name`. */
static size_t record_of(const uint8_t *b, const char *name) {
    uint32_t hlen = imret__rd32(b + 12), n = imret__rd32(b + 16), i;
    size_t table = (32 + hlen + 7) / 8 * 8;
    for (i = 0; i < n; i++)
        if (!strcmp((const char *)b + table + 96 * i, name)) return table + 96 * i;
    fprintf(stderr, "tensor %s not in the test file\n", name);
    exit(2);
}

static void expect(const char *what, const uint8_t *b, size_t n, imret_result want, const char *needle) {
    imret_model *m = (imret_model *)1;
    imret_result r = imret_model_load_memory(b, n, NULL, &m);
    int ok = r == want && m == NULL && strstr(imret_last_error(), needle) != NULL;
    checks++;
    printf("  %-34s -> %-26s \"%s\" %s\n", what, imret_result_string(r), imret_last_error(), ok ? "ok" : "FAIL");
    if (!ok) {
        printf("     expected %s with a message containing \"%s\"\n", imret_result_string(want), needle);
        failures++;
    }
    if (r == IMRET_OK) imret_model_free(m);
}

/* Replace header text `from` by `to` (same length) and re-seal. */
static void header_case(const char *what, const char *from, const char *to, imret_result want, const char *needle) {
    uint8_t *b = copy(orig_size);
    uint32_t hlen = imret__rd32(b + 12);
    char *h = (char *)b + 32, *p;
    size_t i;
    for (p = NULL, i = 0; i + strlen(from) <= hlen; i++)
        if (!memcmp(h + i, from, strlen(from))) { p = h + i; break; }
    if (!p || strlen(from) != strlen(to)) { fprintf(stderr, "bad header case %s\n", what); exit(2); }
    memcpy(p, to, strlen(to));
    reseal(b, orig_size);
    expect(what, b, orig_size, want, needle);
    free(b);
}

int main(int argc, char **argv) {
    uint8_t *b;
    size_t rec, n;
    int mapped = 0;
    imret_model *m;
    if (argc < 2) { fprintf(stderr, "usage: %s resnet18.imw\n", argv[0]); return 2; }
    if (imret__read_file(argv[1], (size_t)1 << 30, "test", &orig, &orig_size, &mapped)) { printf("FAIL %s\n", imret_last_error()); return 1; }
    n = orig_size;
    printf("weight-file corruptions of %s (%lu bytes):\n", argv[1], (unsigned long)n);

    /* sanity: the untouched file loads, from memory, from the file, and mapped */
    {
        imret_model_config mc = imret_model_config_init();
        checks++;
        if (imret_model_load_memory(orig, n, NULL, &m)) { printf("FAIL valid file: %s\n", imret_last_error()); failures++; }
        else imret_model_free(m);
        mc.use_mmap = 1;
        checks++;
        if (imret_model_load_file(argv[1], &mc, &m)) { printf("FAIL valid file (mmap): %s\n", imret_last_error()); failures++; }
        else imret_model_free(m);
    }

    expect("empty", orig, 0, IMRET_ERROR_FORMAT, "shorter than");
    expect("truncated to 31 bytes", orig, 31, IMRET_ERROR_FORMAT, "shorter than");
    expect("truncated by one byte", orig, n - 1, IMRET_ERROR_FORMAT, "truncated");
    expect("truncated to half", orig, n / 2, IMRET_ERROR_FORMAT, "truncated");
    b = copy(n); b[1] = 'X';
    expect("wrong magic", b, n, IMRET_ERROR_FORMAT, "magic"); free(b);
    b = copy(n); imret__wr32(b + 8, 2);
    expect("wrong version", b, n, IMRET_ERROR_VERSION, "version 2"); free(b);
    b = copy(n); b[n - 100] ^= 0x40;
    expect("flipped data byte (CRC)", b, n, IMRET_ERROR_CHECKSUM, "CRC"); free(b);
    b = copy(n); imret__wr32(b + 16, 100000); reseal(b, n);
    expect("absurd tensor count", b, n, IMRET_ERROR_FORMAT, "tensor count"); free(b);
    {   /* a file that ends inside its tensor table, with a consistent size field */
        size_t cut = (32 + imret__rd32(orig + 12) + 7) / 8 * 8 + 96 * 10;
        b = copy(cut); imret__wr64(b + 24, cut); reseal(b, cut);
        expect("tensor table past end of file", b, cut, IMRET_ERROR_FORMAT, "past the end"); free(b);
    }
    b = copy(n); imret__wr32(b + 12, 70000); reseal(b, n);
    expect("absurd header length", b, n, IMRET_ERROR_FORMAT, "header length"); free(b);

    rec = record_of(orig, "layer3.1.conv1.weight");
    b = copy(n); imret__wr64(b + rec + 72, (uint64_t)n + 64); reseal(b, n);
    expect("offset past end of file", b, n, IMRET_ERROR_FORMAT, "outside the file"); free(b);
    b = copy(n); imret__wr64(b + rec + 72, imret__rd64(b + rec + 72) + 4); reseal(b, n);
    expect("misaligned offset", b, n, IMRET_ERROR_FORMAT, "misaligned"); free(b);
    b = copy(n); imret__wr64(b + rec + 72, imret__rd64(b + record_of(orig, "layer3.1.bn1.weight") + 72)); reseal(b, n);
    expect("overlapping tensors", b, n, IMRET_ERROR_FORMAT, "overlap"); free(b);
    b = copy(n); imret__wr64(b + rec + 80, imret__rd64(b + rec + 80) + 4); reseal(b, n);
    expect("length does not match shape", b, n, IMRET_ERROR_FORMAT, "does not match"); free(b);
    b = copy(n); imret__wr32(b + rec + 48, 9); reseal(b, n);
    expect("unknown dtype", b, n, IMRET_ERROR_UNSUPPORTED, "dtype"); free(b);
    b = copy(n); imret__wr32(b + rec + 52, 5); reseal(b, n);
    expect("5 dimensions", b, n, IMRET_ERROR_FORMAT, "dimensions"); free(b);
    /* a consistent record with the wrong shape: 256x128x3x3 where 256x256x3x3 is needed */
    b = copy(n); imret__wr32(b + rec + 60, 128); imret__wr64(b + rec + 80, (uint64_t)256 * 128 * 9 * 4); reseal(b, n);
    expect("shape mismatch", b, n, IMRET_ERROR_SHAPE, "layer3.1.conv1.weight has shape 256x128x3x3"); free(b);
    b = copy(n); memcpy(b + record_of(orig, "fc.bias"), "fc.biaz", 7); reseal(b, n);
    expect("missing tensor", b, n, IMRET_ERROR_MISSING, "fc.bias is missing"); free(b);
    b = copy(n); memcpy(b + rec, "layer3.1.conv1.weigh!", 21); reseal(b, n);
    expect("invalid tensor name", b, n, IMRET_ERROR_FORMAT, "invalid name"); free(b);
    b = copy(n); memcpy(b + record_of(orig, "layer1.0.conv1.weight"), orig + record_of(orig, "layer1.0.conv2.weight"), 48); reseal(b, n);
    expect("duplicate tensor name", b, n, IMRET_ERROR_FORMAT, "twice"); free(b);
    {
        size_t off = (size_t)imret__rd64(orig + rec + 72);
        float nan = NAN;
        b = copy(n); memcpy(b + off + 40, &nan, 4); reseal(b, n);
        expect("NaN weight", b, n, IMRET_ERROR_FORMAT, "NaN"); free(b);
    }
    header_case("unknown architecture", "arch=resnet18", "arch=resnet19", IMRET_ERROR_UNSUPPORTED, "unknown architecture 'resnet19'");
    header_case("wrong architecture (vgg)", "arch=resnet18", "arch=vgg11_bn", IMRET_ERROR_MISSING, "features.0.weight is missing");
    header_case("missing mean", "mean=", "maan=", IMRET_ERROR_MISSING, "no mean=");
    header_case("bad std", "std=", "std@", IMRET_ERROR_MISSING, "no std=");
    header_case("bad input_order", "input_order=rgb", "input_order=xyz", IMRET_ERROR_FORMAT, "input_order");

    /* NULL pointers and limits */
    {
        imret_model_config mc = imret_model_config_init();
        imret_result r;
        checks += 4;
        r = imret_model_load_memory(NULL, 10, NULL, &m);
        printf("  %-34s -> %s\n", "NULL data", imret_result_string(r));
        failures += r != IMRET_ERROR_INVALID_ARGUMENT;
        r = imret_model_load_memory(orig, n, NULL, NULL);
        printf("  %-34s -> %s\n", "NULL out", imret_result_string(r));
        failures += r != IMRET_ERROR_INVALID_ARGUMENT;
        r = imret_model_load_file("/nonexistent/x.imw", NULL, &m);
        printf("  %-34s -> %s \"%s\"\n", "missing file", imret_result_string(r), imret_last_error());
        failures += r != IMRET_ERROR_IO;
        mc.max_file_bytes = 1000;
        r = imret_model_load_file(argv[1], &mc, &m);
        printf("  %-34s -> %s \"%s\"\n", "file over max_file_bytes", imret_result_string(r), imret_last_error());
        failures += r != IMRET_ERROR_LIMIT;
    }
    /* every truncation length inside the fixed header and table */
    {
        size_t cut, bad = 0;
        uint32_t hlen = imret__rd32(orig + 12), nt = imret__rd32(orig + 16);
        size_t table_end = (32 + hlen + 7) / 8 * 8 + 96 * (size_t)nt;
        for (cut = 0; cut < table_end + 200; cut++) {
            imret_result r = imret_model_load_memory(orig, cut, NULL, &m);
            if (r != IMRET_ERROR_FORMAT) bad++;
            if (r == IMRET_OK) imret_model_free(m);
        }
        checks++;
        printf("  %-34s -> %lu lengths, %lu not rejected as format errors %s\n", "every truncation 0..table end",
               (unsigned long)cut, (unsigned long)bad, bad ? "FAIL" : "ok");
        failures += bad != 0;
    }
    imret__release_file(orig, orig_size, mapped);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
