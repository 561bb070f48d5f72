/* test_index_crash.c -- crash safety of imret_index_save_file.
   A forked writer saves two different large indexes (A, B) to the same path over and over,
   starting with the one the file does not hold; the parent SIGKILLs it at random moments
   (>= 100 times), spread over about two save times measured on this machine first, so kills
   land before, during and between saves however fast or loaded the machine is. After every
   kill the file must load and hold exactly A's or B's bytes -- never a torn mix -- and stale
   temporary files are the only debris. Usage: test_index_crash [dir] (default build). */
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
    double t0, t_save = 0;
    int holds_b = 0; /* what the file holds now: 0 A, 1 B */
    setvbuf(stdout, NULL, _IONBF, 0);
    snprintf(path, sizeof path, "%s/crash_test.imri", dir);
    imret_index_save_memory(A, NULL, 0, &sa);
    imret_index_save_memory(B, NULL, 0, &sb);
    ba = (uint8_t *)malloc(sa);
    bb = (uint8_t *)malloc(sb);
    imret_index_save_memory(A, ba, sa, &sa);
    imret_index_save_memory(B, bb, sb, &sb);
    { /* the slowest of four saves (B, A, B, A; the file ends holding A) sets the kill window */
        int i;
        for (i = 0; i < 4; i++) {
            double t = now();
            if (imret_index_save_file(i % 2 ? A : B, path) != IMRET_OK) {
                printf("save failed: %s\n", imret_last_error());
                return 1;
            }
            t = now() - t;
            if (t > t_save) t_save = t;
        }
    }
    t0 = now();
    while (kills < 120 && now() - t0 < 240) /* a cap, not a target: 120 kills take 15-35 s */ {
        pid_t pid = fork();
        if (pid == 0) { /* writer: the other index first, then alternating, until killed */
            int i;
            for (i = !holds_b;; i++)
                if (imret_index_save_file(i % 2 ? B : A, path) != IMRET_OK) _exit(3);
        }
        { /* 0 .. 2.5 save times: before, during and between saves */
            struct timespec ts;
            long us = (long)(rnd() % (uint64_t)(2.5e6 * t_save + 1000));
            ts.tv_sec = us / 1000000;
            ts.tv_nsec = (us % 1000000) * 1000;
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
                holds_b = 0;
            } else if (sz == sb && !memcmp(f, bb, sb)) {
                got_b++;
                holds_b = 1;
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
    printf("crash safety: %lu SIGKILLs within 0-%.0f ms of a writer alternating two indexes (%lu and %lu bytes) in %.1f s: "
           "file held A %lu times, B %lu times, torn/unloadable %lu; %lu stale temp files removed\n",
           (unsigned long)kills, 2.5e3 * t_save, (unsigned long)sa, (unsigned long)sb, now() - t0, (unsigned long)got_a, (unsigned long)got_b,
           (unsigned long)fails, (unsigned long)debris);
    imret_index_destroy(A);
    imret_index_destroy(B);
    free(ba);
    free(bb);
    return fails || kills < 100 || !got_a || !got_b ? 1 : 0;
}
