/* calibrate -- activation scales for int8 inference (IMRET_PRECISION_INT8).

   usage: calibrate [--model FILE] [--size N] [--stat max|mean] [--threads N] IMAGE... > CALIB.tsv
     --model   weights (default weights/resnet50.imw)
     --size    longest side of the calibration inputs (default 512, as retrieval)
     --stat    how the per-image maxima of each convolution's input are combined:
               mean (default) = their average: clips the rare extreme values of a few
               images, finer steps for the rest; max = the largest over all images.
               Measured on ResNet-50 (12 test images, longest side 512, calibrated on 32
               others): worst descriptor cosine to fp32 0.9962 with mean, 0.9920 with max.
   Runs the fp32 network on each image (imret_calibrate_forward) and prints one line per
   quantised convolution, "conv_name<TAB>value": the clipping value of its input (inputs
   are quantised to 0..127 in steps of value / 127). Then:
       /usr/bin/python3 tools/requantise.py IN.imw OUT.imw --dtype int8 --act-max CALIB.tsv
   A few dozen images like the ones to be indexed are enough; do not calibrate on the images
   you evaluate on. build: make build/calibrate */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <stdio.h>

int main(int argc, char **argv) {
    const char *model_path = "weights/resnet50.imw", **names;
    int size = 512, use_mean = 1, threads = 0, a, nq, i, used = 0;
    imret_model *m;
    imret_context *ctx;
    imret_context_config cc = imret_context_config_init();
    double *agg;
    float *mx;
    for (a = 1; a < argc && argv[a][0] == '-'; a++) {
        if (!strcmp(argv[a], "--model") && a + 1 < argc) model_path = argv[++a];
        else if (!strcmp(argv[a], "--size") && a + 1 < argc) size = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--threads") && a + 1 < argc) threads = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--stat") && a + 1 < argc) {
            a++;
            if (!strcmp(argv[a], "mean")) use_mean = 1;
            else if (!strcmp(argv[a], "max")) use_mean = 0;
            else { fprintf(stderr, "calibrate: --stat max|mean\n"); return 2; }
        } else { fprintf(stderr, "calibrate: unknown option %s (see the source)\n", argv[a]); return 2; }
    }
    if (a == argc) { fprintf(stderr, "usage: calibrate [--model FILE] [--size N] [--stat max|mean] IMAGE... > CALIB.tsv\n"); return 2; }
    if (imret_model_load_file(model_path, NULL, &m)) { fprintf(stderr, "calibrate: %s\n", imret_last_error()); return 1; }
    cc.threads = threads;
    if (imret_context_create(m, &cc, &ctx)) { fprintf(stderr, "calibrate: %s\n", imret_last_error()); return 1; }
    nq = imret_model_quant_layers(m, NULL, 0);
    names = (const char **)calloc((size_t)nq, sizeof *names);
    agg = (double *)calloc((size_t)nq, sizeof *agg);
    mx = (float *)calloc((size_t)nq, sizeof *mx);
    imret_model_quant_layers(m, names, nq);
    for (; a < argc; a++) {
        imret_image img;
        imret_tensor x;
        imret_preprocess_config pc = imret_preprocess_config_init();
        pc.longest_side = size;
        if (imret_image_load_file(argv[a], NULL, &img) || imret_preprocess(m, &img, &pc, &x)) {
            fprintf(stderr, "calibrate: skipping %s: %s\n", argv[a], imret_last_error());
            continue;
        }
        if (imret_calibrate_forward(ctx, &x, mx, (size_t)nq)) { fprintf(stderr, "calibrate: %s\n", imret_last_error()); return 1; }
        for (i = 0; i < nq; i++) agg[i] = use_mean ? agg[i] + mx[i] : (mx[i] > agg[i] ? mx[i] : agg[i]);
        used++;
        imret_tensor_free(&x);
        imret_image_free(&img);
    }
    if (!used) { fprintf(stderr, "calibrate: no usable image\n"); return 1; }
    printf("# %s: %d images, longest side %d, clipping value = %s of the per-image input maxima\n",
           model_path, used, size, use_mean ? "mean" : "max");
    for (i = 0; i < nq; i++) {
        double v = use_mean ? agg[i] / used : agg[i];
        printf("%s\t%.9g\n", names[i], v > 0 ? v : 1.0);
    }
    free(names); free(agg); free(mx);
    imret_context_destroy(ctx);
    imret_model_free(m);
    return 0;
}
