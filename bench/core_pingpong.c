/* core_pingpong -- round-trip time of a cache line bounced between CPU 0 and CPU 1 (two pinned
   threads, acquire/release flag), the cost of moving data from one core's cache to the
   other's. On the project's 2-vCPU machines it tells whether the two vCPUs share a cache
   (a Zen 4 VM: 55-75 ns) or sit far apart (the same VM at other times: 340-390 ns, when
   ResNet-50 at 2 threads ran 40 % slower and ONNX Runtime 10 %); see imret__conv_gemm_fast's
   static schedule. usage: core_pingpong [ROUNDS=200000]        (make bench-pingpong) */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Atomic int flag __attribute__((aligned(64)));
static long rounds = 200000;

static int pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    return pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void *other(void *arg) {
    long i;
    (void)arg;
    if (pin(1)) return NULL;
    for (i = 0; i < rounds; i++) {
        while (atomic_load_explicit(&flag, memory_order_acquire) != 1) {}
        atomic_store_explicit(&flag, 0, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv) {
    pthread_t t;
    struct timespec a, b;
    long i;
    if (argc > 1) rounds = atol(argv[1]);
    if (rounds < 1) rounds = 1;
    if (pin(0)) { fprintf(stderr, "core_pingpong: cannot pin to CPU 0\n"); return 1; }
    if (pthread_create(&t, NULL, other, NULL)) { fprintf(stderr, "core_pingpong: no second thread\n"); return 1; }
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (i = 0; i < rounds; i++) {
        atomic_store_explicit(&flag, 1, memory_order_release);
        while (atomic_load_explicit(&flag, memory_order_acquire) != 0) {}
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    pthread_join(t, NULL);
    printf("CPU 0 <-> CPU 1 cache-line round trip: %.0f ns\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / rounds);
    return 0;
}
