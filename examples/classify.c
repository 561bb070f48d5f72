/* classify -- top-5 ImageNet classes of image files: the first program to run to see that a
   model file works.

   usage: classify [--threads N] MODEL.imw IMAGE...
   Preprocessing is the ImageNet protocol (shorter side 256, centre crop 224) with the
   model's own normalisation. Exit code 0 if every image was classified, 2 otherwise. */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include "imagenet_classes.h"

int main(int argc, char **argv) {
    imret_model *model;
    imret_model_info info;
    imret_context *ctx;
    imret_context_config cc = imret_context_config_init();
    imret_preprocess_config pc = imret_preprocess_config_init();
    float *logits;
    int a = 1, failed = 0;
    if (argc > 2 && !strcmp(argv[1], "--threads")) { cc.threads = atoi(argv[2]); a = 3; }
    if (argc - a < 2) {
        fprintf(stderr, "usage: %s [--threads N] MODEL.imw IMAGE...\n", argv[0]);
        return 1;
    }
    if (imret_model_load_file(argv[a], NULL, &model) != IMRET_OK) {
        fprintf(stderr, "classify: %s\n", imret_last_error());
        return 2;
    }
    imret_model_get_info(model, &info);
    if (info.num_classes != 1000) {
        fprintf(stderr, "classify: %s has %d classes, not the 1000 ImageNet classes\n", argv[a], info.num_classes);
        return 2;
    }
    if (imret_context_create(model, &cc, &ctx) != IMRET_OK) {
        fprintf(stderr, "classify: %s\n", imret_last_error());
        return 2;
    }
    pc.mode = IMRET_RESIZE_CENTER_CROP;
    logits = (float *)malloc(1000 * sizeof(float));
    for (a = a + 1; a < argc; a++) {
        imret_image img;
        imret_tensor x;
        int top[5], i, j;
        double sum = 0, mx;
        if (imret_image_load_file(argv[a], NULL, &img) || imret_preprocess(model, &img, &pc, &x) ||
            imret_forward_logits(ctx, &x, logits, 1000, NULL)) {
            fprintf(stderr, "classify: %s\n", imret_last_error());
            imret_image_free(&img);
            failed++;
            continue;
        }
        for (mx = logits[0], i = 1; i < 1000; i++) if (logits[i] > mx) mx = logits[i];
        for (i = 0; i < 1000; i++) sum += exp(logits[i] - mx);
        for (j = 0; j < 5; j++) { /* top-5 by repeated selection */
            top[j] = -1;
            for (i = 0; i < 1000; i++) {
                int taken = 0, k;
                for (k = 0; k < j; k++) taken |= top[k] == i;
                if (!taken && (top[j] < 0 || logits[i] > logits[top[j]])) top[j] = i;
            }
        }
        printf("%s (%dx%d):\n", argv[a], img.width, img.height);
        for (j = 0; j < 5; j++)
            printf("  %5.1f%%  %3d %s\n", 100.0 * exp(logits[top[j]] - mx) / sum, top[j], imret_imagenet_classes[top[j]]);
        imret_tensor_free(&x);
        imret_image_free(&img);
    }
    free(logits);
    imret_context_destroy(ctx);
    imret_model_free(model);
    return failed ? 2 : 0;
}
