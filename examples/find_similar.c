/* find_similar -- the smallest "find similar photos" program: describe images with the
   default model (GeM, retrieval setting), put them in a cosine index, ask for the nearest.

   usage: find_similar MODEL.imw QUERY.jpg IMAGE...
   Prints the 5 images most similar to QUERY with their cosine similarity. */
#define IMRET_IMPLEMENTATION
#include "imret.h"

/* describe one image file into vec (dim floats); 0 on success */
static int describe(imret_context *ctx, const char *path, float *vec, size_t dim) {
    imret_image img;
    imret_descriptor_config dc = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
    imret_result rc = imret_image_load_file(path, NULL, &img);
    if (rc == IMRET_OK) {
        rc = imret_describe(ctx, &img, &dc, vec, dim);
        imret_image_free(&img);
    }
    if (rc != IMRET_OK) fprintf(stderr, "find_similar: %s\n", imret_last_error());
    return rc != IMRET_OK;
}

int main(int argc, char **argv) {
    imret_model *model;
    imret_model_info info;
    imret_context *ctx;
    imret_index *idx;
    imret_index_config ic = imret_index_config_init();
    imret_index_hit hits[5];
    size_t count, k, dim;
    float *vec;
    int i;
    if (argc < 4) {
        fprintf(stderr, "usage: find_similar MODEL.imw QUERY IMAGE...\n");
        return 1;
    }
    if (imret_model_load_file(argv[1], NULL, &model) || imret_context_create(model, NULL, &ctx)) {
        fprintf(stderr, "find_similar: %s\n", imret_last_error());
        return 2;
    }
    imret_model_get_info(model, &info);
    dim = (size_t)info.feature_channels;
    vec = (float *)malloc(dim * sizeof(float));
    ic.dim = dim;                             /* cosine index of float vectors */
    ic.model_fingerprint = info.fingerprint;  /* never mix vectors of two models */
    if (!vec || imret_index_create(&ic, &idx)) return 2;
    for (i = 3; i < argc; i++) /* id = argument number, label = path */
        if (!describe(ctx, argv[i], vec, dim)) imret_index_add(idx, (uint64_t)i, argv[i], vec, NULL);
    if (describe(ctx, argv[2], vec, dim) ||
        imret_index_search_cosine(idx, vec, 1, 5, NULL, hits, &count)) {
        fprintf(stderr, "find_similar: %s\n", imret_last_error());
        return 2;
    }
    printf("most similar to %s:\n", argv[2]);
    for (k = 0; k < count; k++) {
        imret_index_entry e;
        imret_index_get(idx, hits[k].id, &e);
        printf("  %.4f  %s\n", (double)hits[k].score, e.label);
    }
    imret_index_destroy(idx);
    free(vec);
    imret_context_destroy(ctx);
    imret_model_free(model);
    return 0;
}
