/* test_index_crash.c -- crash safety of imret_index_save_file.
   A forked writer saves two different large indexes (A, B) to the same path over and over;
   the parent SIGKILLs it at random moments (>= 100 times). After every kill the file must
   load and hold exactly A's or B's bytes -- never a torn mix -- and stale temporary files
   are the only debris. Usage: test_index_crash [dir] (default build). */
#define _POSIX_C_SOURCE 200809L
#define IMRET_IMPLEMENTATION
#include "imret.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <dirent.h>
#include <sys/wait.h>

static uint64_t st = 12345;
static uint64_t rnd(void) {
    uint64_t z = (st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static imret_index *make(size_t n, uint64_t salt) {
    imret_index_config cfg = imret_index_config_init();
    imret_index *idx;
    size_t i, d;
    cfg.dim = 32;
    cfg.bits = 256;
    cfg.storage = IMRET_INDEX_FP16;
    cfg.descriptor = salt ? "setting B" : "setting A";
    cfg.model_fingerprint = salt;
    imret_index_create(&cfg, &idx);
    for (i = 0; i < n; i++) {
        float v[32];
        uint64_t c[4] = {rnd(), rnd(), rnd(), rnd()};
        char label[40];
        for (d = 0; d < 32; d++) v[d] = (float)(rnd() % 1000) - 500.0f;
        snprintf(label, sizeof label, "dir/%llu.jpg", (unsigned long long)(i ^ salt));
        imret_index_add(idx, i * 2 + salt, label, v, c);
    }
    return idx;
}

static uint8_t *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    uint8_t *b;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = (uint8_t *)malloc(n ? (size_t)n : 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); fclose(f); return NULL; }
    fclose(f);
    *size = (size_t)n;
    return b;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "build";
    char path[512];
    imret_index *A = make(60000, 0), *B = make(45000, 1);
    size_t sa, sb, kills = 0, got_a = 0, got_b = 0, debris = 0, fails = 0;
    uint8_t *ba, *bb;
    double t0 = now();
    setvbuf(stdout, NULL, _IONBF, 0);
    snprintf(path, sizeof path, "%s/crash_test.imri", dir);
    imret_index_save_memory(A, NULL, 0, &sa);
    imret_index_save_memory(B, NULL, 0, &sb);
    ba = (uint8_t *)malloc(sa);
    bb = (uint8_t *)malloc(sb);
    imret_index_save_memory(A, ba, sa, &sa);
    imret_index_save_memory(B, bb, sb, &sb);
    if (imret_index_save_file(A, path) != IMRET_OK) { printf("initial save failed: %s\n", imret_last_error()); return 1; }
    while (kills < 120 && now() - t0 < 60) {
        pid_t pid = fork();
        if (pid == 0) { /* writer: B, A, B, A, ... until killed */
            int i;
            for (i = 0;; i++)
                if (imret_index_save_file(i % 2 ? A : B, path) != IMRET_OK) _exit(3);
        }
        {
            struct timespec ts;
            long us = (long)(rnd() % 90000); /* 0..90 ms: before, during and between saves */
            ts.tv_sec = 0;
            ts.tv_nsec = us * 1000;
            nanosleep(&ts, NULL);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        kills++;
        {
            size_t sz = 0;
            uint8_t *f = slurp(path, &sz);
            imret_index *L = NULL;
            imret_result r = imret_index_load_file(path, NULL, &L);
            if (r != IMRET_OK || !f) {
                printf("FAIL kill %lu: file does not load: %s\n", (unsigned long)kills, imret_last_error());
                fails++;
            } else if (sz == sa && !memcmp(f, ba, sa)) {
                got_a++;
            } else if (sz == sb && !memcmp(f, bb, sb)) {
                got_b++;
            } else {
                printf("FAIL kill %lu: file (%lu bytes) is neither A nor B\n", (unsigned long)kills, (unsigned long)sz);
                fails++;
            }
            imret_index_destroy(L);
            free(f);
        }
        { /* remove the killed writer's temporary files */
            DIR *d = opendir(dir);
            struct dirent *e;
            while (d && (e = readdir(d)))
                if (!strncmp(e->d_name, "crash_test.imri.tmp-", 20)) {
                    char p2[1024];
                    snprintf(p2, sizeof p2, "%s/%s", dir, e->d_name);
                    remove(p2);
                    debris++;
                }
            if (d) closedir(d);
        }
    }
    remove(path);
    printf("crash safety: %lu SIGKILLs of a writer alternating two indexes (%lu and %lu bytes) in %.1f s: "
           "file held A %lu times, B %lu times, torn/unloadable %lu; %lu stale temp files removed\n",
           (unsigned long)kills, (unsigned long)sa, (unsigned long)sb, now() - t0, (unsigned long)got_a, (unsigned long)got_b,
           (unsigned long)fails, (unsigned long)debris);
    imret_index_destroy(A);
    imret_index_destroy(B);
    free(ba);
    free(bb);
    return fails || kills < 100 || !got_a || !got_b ? 1 : 0;
}
