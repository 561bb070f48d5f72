/* Test allocator for imret's IMRET_MALLOC/IMRET_REALLOC/IMRET_FREE hooks: counts calls and
   live/peak bytes, and can make the Nth allocation (malloc or growing realloc) fail.
   Include BEFORE imret.h in a test that defines IMRET_IMPLEMENTATION. */
#ifndef ALLOC_HOOK_H
#define ALLOC_HOOK_H
#include <stdlib.h>
#include <string.h>
#include <stddef.h>

static size_t hook_calls;      /* allocations attempted (malloc + realloc)              */
static size_t hook_fail_at;    /* 1-based index of the allocation to fail; 0 = never    */
static size_t hook_failed;     /* allocations refused so far                            */
static size_t hook_live, hook_peak, hook_blocks; /* bytes live / peak bytes, live blocks */

typedef union hook_hdr { size_t n; long double ld; void *p; long long ll; } hook_hdr;

static void *hook_malloc(size_t n) {
    hook_hdr *h;
    hook_calls++;
    if (hook_fail_at && hook_calls == hook_fail_at) { hook_failed++; return NULL; }
    if (n > (size_t)-1 - sizeof(hook_hdr)) return NULL;
    h = (hook_hdr *)malloc(sizeof(hook_hdr) + n);
    if (!h) return NULL;
    h->n = n;
    hook_live += n;
    hook_blocks++;
    if (hook_live > hook_peak) hook_peak = hook_live;
    return h + 1;
}
static void hook_free(void *p) {
    hook_hdr *h;
    if (!p) return;
    h = (hook_hdr *)p - 1;
    hook_live -= h->n;
    hook_blocks--;
    free(h);
}
static void *hook_realloc(void *p, size_t n) {
    hook_hdr *h, *g;
    if (!p) return hook_malloc(n);
    hook_calls++;
    if (hook_fail_at && hook_calls == hook_fail_at) { hook_failed++; return NULL; }
    if (n > (size_t)-1 - sizeof(hook_hdr)) return NULL;
    h = (hook_hdr *)p - 1;
    hook_live -= h->n;
    g = (hook_hdr *)realloc(h, sizeof(hook_hdr) + n);
    if (!g) { hook_live += h->n; return NULL; }
    g->n = n;
    hook_live += n;
    if (hook_live > hook_peak) hook_peak = hook_live;
    return g + 1;
}
static void hook_reset(size_t fail_at) { hook_calls = hook_failed = 0; hook_fail_at = fail_at; hook_peak = hook_live; }

#define IMRET_MALLOC(sz) hook_malloc(sz)
#define IMRET_REALLOC(p, sz) hook_realloc(p, sz)
#define IMRET_FREE(p) hook_free(p)
#endif
