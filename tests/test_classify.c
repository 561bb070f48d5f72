/* ImageNet sanity of the default model: on real photos with an obvious class, the expected
   class is among the top 5 (ImageNet protocol: shorter side 256, centre crop 224).

   usage: test_classify weights/resnet50.imw
   Photos: scikit-image's sample images (Debian python3-skimage; see its data/README.txt for
   their licenses) and one UKBench photo from ../shared/data/imagededup. Expected classes were chosen by a person looking at the
   photo (standard ImageNet-1k indices), not produced by imret. */
#define IMRET_IMPLEMENTATION
#include "imret.h"

#define SK "/usr/lib/python3/dist-packages/skimage/data/"
static const struct { const char *path, *what; int ok[4]; } cases[] = {
    {SK "chelsea.png", "a tabby cat", {281, 282, 285, -1}},            /* tabby, tiger cat, Egyptian cat */
    {SK "coffee.png", "a cup of coffee", {967, 968, 504, -1}},         /* espresso, cup, coffee mug      */
    {SK "rocket.jpg", "a rocket on its launch pad", {657, 812, 744, -1}}, /* missile, space shuttle, projectile */
    {SK "motorcycle_left.png", "a motorcycle", {670, 665, 518, -1}},  /* motor scooter, moped, crash helmet */
    {"../shared/data/imagededup/base_images/ukbench09012.jpg", "an acoustic guitar", {402, -1, -1, -1}},
};

int main(int argc, char **argv) {
    imret_model *m;
    imret_context *ctx;
    imret_preprocess_config pc = imret_preprocess_config_init();
    float logits[1000];
    int i, failures = 0, n = 0;
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL.imw\n", argv[0]); return 2; }
    if (imret_model_load_file(argv[1], NULL, &m) || imret_context_create(m, NULL, &ctx)) { printf("FAIL %s\n", imret_last_error()); return 1; }
    pc.mode = IMRET_RESIZE_CENTER_CROP;
    for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        imret_image img;
        imret_tensor x;
        int top[5], j, k, hit = 0;
        n++;
        if (imret_image_load_file(cases[i].path, NULL, &img) || imret_preprocess(m, &img, &pc, &x) ||
            imret_forward_logits(ctx, &x, logits, 1000, NULL)) {
            printf("  FAIL %s: %s\n", cases[i].path, imret_last_error());
            failures++;
            continue;
        }
        for (j = 0; j < 5; j++) {
            top[j] = -1;
            for (k = 0; k < 1000; k++) {
                int taken = 0, q;
                for (q = 0; q < j; q++) taken |= top[q] == k;
                if (!taken && (top[j] < 0 || logits[k] > logits[top[j]])) top[j] = k;
            }
            for (k = 0; k < 4; k++) hit |= cases[i].ok[k] == top[j];
        }
        printf("  %-22s %-28s top-5 %4d %4d %4d %4d %4d  %s\n", strrchr(cases[i].path, '/') + 1, cases[i].what, top[0], top[1],
               top[2], top[3], top[4], hit ? "ok" : "FAIL");
        failures += !hit;
        imret_tensor_free(&x);
        imret_image_free(&img);
    }
    printf("%d photos, %d failed\n", n, failures);
    imret_context_destroy(ctx);
    imret_model_free(m);
    return failures ? 1 : 0;
}
