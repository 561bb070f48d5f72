/* dedup_sprites -- find duplicate game sprites with compact binary codes: describe each
   sprite with the near-duplicate setting (RGBA composited on neutral grey, small sprites
   enlarged to 224 px), turn the descriptors into 256-bit codes with the hash layer (LSH,
   no training), and group codes within a Hamming distance.

   usage: dedup_sprites MODEL.imw MAX_BITS IMAGE...
   Prints one line per group of duplicates (codes at most MAX_BITS bits apart). */
#define IMRET_IMPLEMENTATION
#include "imret.h"

int main(int argc, char **argv) {
    imret_model *model;
    imret_model_info info;
    imret_context *ctx;
    imret_hash *hash;
    imret_hash_config hc = imret_hash_config_init();
    imret_index *idx;
    imret_index_config ic = imret_index_config_init();
    imret_descriptor_config dc = imret_descriptor_config_init(IMRET_SETTING_DUPLICATE);
    imret_dedup_options opt = imret_dedup_options_init();
    imret_dedup_result res;
    uint64_t code[4]; /* 256 bits */
    float *vec;
    size_t g, m;
    int i;
    if (argc < 4) {
        fprintf(stderr, "usage: dedup_sprites MODEL.imw MAX_BITS IMAGE...\n");
        return 1;
    }
    if (imret_model_load_file(argv[1], NULL, &model) || imret_context_create(model, NULL, &ctx)) {
        fprintf(stderr, "dedup_sprites: %s\n", imret_last_error());
        return 2;
    }
    imret_model_get_info(model, &info);
    vec = (float *)malloc((size_t)info.feature_channels * sizeof(float));
    dc.preprocess.filter = IMRET_FILTER_BOX; /* pixel art: enlarge with hard pixel edges */
    hc.method = IMRET_HASH_LSH; /* random hyperplanes: Hamming distance tracks the angle */
    hc.bits = 256;
    ic.bits = 256;              /* an index of codes only */
    ic.model_fingerprint = info.fingerprint;
    if (!vec || imret_hash_train(NULL, 0, (size_t)info.feature_channels, &hc, &hash) || imret_index_create(&ic, &idx)) {
        fprintf(stderr, "dedup_sprites: %s\n", imret_last_error());
        return 2;
    }
    for (i = 3; i < argc; i++) {
        imret_image img;
        if (imret_image_load_file(argv[i], NULL, &img) != IMRET_OK) {
            fprintf(stderr, "dedup_sprites: skipped %s\n", imret_last_error());
            continue;
        }
        if (imret_describe(ctx, &img, &dc, vec, (size_t)info.feature_channels) == IMRET_OK &&
            imret_hash_encode(hash, vec, 1, (size_t)info.feature_channels, code, 4, 0) == IMRET_OK)
            imret_index_add(idx, (uint64_t)i, argv[i], NULL, code);
        imret_image_free(&img);
    }
    opt.metric = IMRET_METRIC_HAMMING;
    opt.threshold = atof(argv[2]);
    if (imret_index_dedup(idx, &opt, &res) != IMRET_OK) {
        fprintf(stderr, "dedup_sprites: %s\n", imret_last_error());
        return 2;
    }
    for (g = 0; g < res.group_count; g++) { /* members[0] first, then by distance to it */
        for (m = 0; m < res.groups[g].count; m++) {
            imret_index_entry e;
            imret_index_get(idx, res.groups[g].members[m].id, &e);
            printf("%s%s (%d bits)", m ? "  " : "", e.label, (int)res.groups[g].members[m].score);
        }
        printf("\n");
    }
    printf("%zu groups\n", res.group_count);
    imret_dedup_result_free(&res);
    imret_index_destroy(idx);
    imret_hash_free(hash);
    free(vec);
    imret_context_destroy(ctx);
    imret_model_free(model);
    return 0;
}
