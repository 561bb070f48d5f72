/* No data lost: every file imret writes (index, whitening, hash, FAISS export) goes through
   one crash-safe writer. Here its failure paths:
   - disk full: a forked child with RLIMIT_FSIZE below the new file's size (SIGXFSZ ignored,
     so write() fails with EFBIG as on a full disk) saves over an existing file: the call
     must return IMRET_ERROR_IO naming the write error, the old file must be byte-identical,
     and no temporary file may be left in the directory;
   - the rename fails (the target is a directory): IMRET_ERROR_IO, directory untouched,
     no temporary file left;
   - a read-only directory (skipped when running as root, who may write anyway): IMRET_ERROR_IO,
     old file intact.
   usage: test_disk_full DIR (a scratch directory is created inside it) */
#define _POSIX_C_SOURCE 200809L
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <dirent.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/resource.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fails++; printf("FAIL: "); printf(__VA_ARGS__); printf(" [%s]\n", imret_last_error()); } } while (0)

static char dir[512];
static imret_index *big_index, *small_index;
static imret_whitening *big_w, *small_w;
static imret_hash *big_h, *small_h;

enum { W_INDEX, W_WHITEN, W_HASH, W_FAISS, W_COUNT };
static const char *const wname[W_COUNT] = {"index save", "whitening save", "hash save", "FAISS export"};

static imret_result save(int which, int big, const char *path) {
    switch (which) {
    case W_INDEX: return imret_index_save_file(big ? big_index : small_index, path);
    case W_WHITEN: return imret_whitening_save_file(big ? big_w : small_w, path);
    case W_HASH: return imret_hash_save_file(big ? big_h : small_h, path);
    default: return imret_index_export_faiss(big ? big_index : small_index, IMRET_METRIC_HAMMING, path, NULL);
    }
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    uint8_t *b = NULL;
    long len;
    *n = 0;
    if (f && !fseek(f, 0, SEEK_END) && (len = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) && (b = (uint8_t *)malloc((size_t)len + 1)) &&
        fread(b, 1, (size_t)len, f) == (size_t)len)
        *n = (size_t)len;
    else { free(b); b = NULL; }
    if (f) fclose(f);
    return b;
}

static int count_files(const char *d) {
    DIR *dp = opendir(d);
    struct dirent *e;
    int n = 0;
    if (!dp) return -1;
    while ((e = readdir(dp)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(dp);
    return n;
}

static void disk_full(int which) {
    char path[600];
    uint8_t *before, *after;
    size_t nb, na;
    pid_t pid;
    int status = 0;
    snprintf(path, sizeof path, "%s/%d.out", dir, which);
    CHECK(save(which, 0, path) == IMRET_OK, "%s: first (small) save", wname[which]);
    before = slurp(path, &nb);
    pid = fork();
    if (pid == 0) {
        struct rlimit rl;
        imret_result rc;
        signal(SIGXFSZ, SIG_IGN);
        rl.rlim_cur = rl.rlim_max = 4096 + nb; /* the big file is far larger */
        setrlimit(RLIMIT_FSIZE, &rl);
        rc = save(which, 1, path);
        printf("  %-16s over a %lu-byte file with RLIMIT_FSIZE %lu -> %s: %s\n", wname[which], (unsigned long)nb, (unsigned long)rl.rlim_cur,
               imret_result_string(rc), imret_last_error());
        fflush(stdout);
        _exit(rc == IMRET_ERROR_IO && strstr(imret_last_error(), "write error") ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: disk full did not give IMRET_ERROR_IO with a write error", wname[which]);
    after = slurp(path, &na);
    CHECK(before && after && na == nb && !memcmp(before, after, nb), "%s: the previous file changed after a failed save", wname[which]);
    CHECK(count_files(dir) == 1, "%s: %d files in %s after a failed save (temporary file left?)", wname[which], count_files(dir), dir);
    /* and the big save works without the limit, replacing the file */
    CHECK(save(which, 1, path) == IMRET_OK, "%s: save without limit", wname[which]);
    free(after);
    after = slurp(path, &na);
    CHECK(after && na > nb + 4096, "%s: big file not written", wname[which]);
    remove(path);
    free(before);
    free(after);
}

int main(int argc, char **argv) {
    imret_index_config ic = imret_index_config_init();
    imret_whitening_config wc = imret_whitening_config_init();
    imret_hash_config hc = imret_hash_config_init();
    float *x = (float *)malloc(sizeof(float) * 400 * 256);
    uint64_t code[4];
    char path[600];
    unsigned s = 5;
    size_t i;
    int which;
    setvbuf(stdout, NULL, _IONBF, 0); /* no buffered output duplicated into the children */
    snprintf(dir, sizeof dir, "%s/disk_full_test", argc > 1 ? argv[1] : "build");
    mkdir(dir, 0777);
    for (i = 0; i < 400 * 256; i++) { s = s * 1103515245u + 12345u; x[i] = (float)((s >> 8) & 1023) / 512.0f - 1.0f; }
    ic.dim = 256; ic.bits = 256;
    CHECK(!imret_index_create(&ic, &big_index) && !imret_index_create(&ic, &small_index), "index create");
    for (i = 0; i < 400; i++) {
        code[0] = i; code[1] = i * 3; code[2] = ~i; code[3] = i << 7;
        CHECK(!imret_index_add(big_index, i, "some/label.jpg", x + 256 * i, code), "add");
        if (i < 2) CHECK(!imret_index_add(small_index, i, NULL, x + 256 * i, code), "add");
    }
    wc.out_dim = 128;
    CHECK(!imret_whitening_train(x, 400, 256, &wc, &big_w), "whitening");
    wc.out_dim = 2;
    CHECK(!imret_whitening_train(x, 400, 4, &wc, &small_w), "whitening");
    hc.method = IMRET_HASH_LSH; hc.bits = 1024;
    CHECK(!imret_hash_train(NULL, 0, 256, &hc, &big_h), "hash");
    hc.bits = 64;
    CHECK(!imret_hash_train(NULL, 0, 4, &hc, &small_h), "hash");
    printf("disk full (RLIMIT_FSIZE in a forked child, SIGXFSZ ignored):\n");
    for (which = 0; which < W_COUNT; which++) disk_full(which);
    /* rename fails: the target is a non-empty directory */
    snprintf(path, sizeof path, "%s/target_is_dir", dir);
    mkdir(path, 0777);
    {
        char inner[700];
        FILE *f;
        snprintf(inner, sizeof inner, "%s/keep", path);
        f = fopen(inner, "w");
        if (f) fclose(f);
        for (which = 0; which < W_COUNT; which++) {
            imret_result rc = save(which, 0, path);
            printf("  %-16s onto a directory -> %s: %s\n", wname[which], imret_result_string(rc), imret_last_error());
            CHECK(rc == IMRET_ERROR_IO, "%s onto a directory: %s", wname[which], imret_result_string(rc));
            CHECK(count_files(dir) == 1 && count_files(path) == 1, "%s onto a directory: files left behind", wname[which]);
        }
        remove(inner);
        rmdir(path);
    }
    /* read-only directory */
    if (geteuid() == 0) {
        printf("  read-only directory: skipped (running as root, who may write anyway)\n");
    } else {
        uint8_t *before, *after;
        size_t nb, na;
        snprintf(path, sizeof path, "%s/ro.imri", dir);
        CHECK(save(W_INDEX, 0, path) == IMRET_OK, "ro: first save");
        before = slurp(path, &nb);
        chmod(dir, 0555);
        for (which = 0; which < W_COUNT; which++)
            CHECK(save(which, 1, path) == IMRET_ERROR_IO, "%s into a read-only directory", wname[which]);
        chmod(dir, 0777);
        after = slurp(path, &na);
        CHECK(before && after && na == nb && !memcmp(before, after, nb) && count_files(dir) == 1, "read-only directory: old file changed or debris");
        printf("  read-only directory: IMRET_ERROR_IO for every writer, old file intact\n");
        remove(path);
        free(before);
        free(after);
    }
    rmdir(dir);
    imret_index_destroy(big_index); imret_index_destroy(small_index);
    imret_whitening_free(big_w); imret_whitening_free(small_w);
    imret_hash_free(big_h); imret_hash_free(small_h);
    free(x);
    printf("disk-full: %s\n", fails ? "FAILED" : "every failed write reported IMRET_ERROR_IO, old files intact, no temporary files left");
    return fails != 0;
}
