// bench_step: times one training step of a CLIP config at a batch size: forward of both towers,
// the CLIP loss and the backward pass (no optimizer update), on synthetic inputs. Captions are
// random ids with the EOT at a caption-like length (8-20 ids, seeded), as real captions are.
// Prints ms/step, samples/s and achieved GFLOP/s (the multiply-adds the step actually ran), plus
// the BLAS and thread count in use. bench/bench_step.py times the same computation in PyTorch.
//
// Usage: bench_step [--model clip-tiny] [--batch-size 128] [--steps 10] [--warmup 2] [--threads 0]
//                   [--configs configs/models] [--device cpu|cuda] [--bf16]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/args.h"
#include "common/error.h"
#include "common/sysinfo.h"
#include "bench/clip_cost.h"
#include "model/clip.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static tensor *synthetic_tokens(int64_t B, int64_t C, int64_t vocab, unsigned seed, int *max_len) {
    int64_t *ids = calloc((size_t)(B * C), sizeof(int64_t));
    srand(seed);
    *max_len = 0;
    for (int64_t b = 0; b < B; b++) {
        int len = 8 + rand() % 13;  // SOT + words + EOT
        if (len > C) len = (int)C;
        ids[b * C] = vocab - 2;
        for (int i = 1; i < len - 1; i++) ids[b * C + i] = 1 + rand() % (vocab - 3);
        ids[b * C + len - 1] = vocab - 1;
        if (len > *max_len) *max_len = len;
    }
    int64_t shape[2] = {B, C};
    tensor *t = tensor_from_host(ids, shape, 2, TENSOR_I64, false);
    free(ids);
    return t;
}

static int run_step(clip_model *m, const tensor *images, const tensor *tokens, bool bf16) {
    tensor_scope_begin();
    if (bf16) tensor_autocast_begin(TENSOR_BF16);
    tensor *img = clip_encode_image(m, images, true);
    tensor *txt = clip_encode_text(m, tokens, true);
    if (bf16) {
        tensor_autocast_end();
        img = tensor_to_dtype(img, TENSOR_F32);
        txt = tensor_to_dtype(txt, TENSOR_F32);
    }
    tensor *logits = tensor_mul(tensor_exp(m->logit_scale), tensor_matmul(img, tensor_transpose(txt, 0, 1)));
    tensor *labels = tensor_arange(tensor_size(img, 0), TENSOR_I64, m->device);
    tensor *loss = tensor_mul_scalar(tensor_add(tensor_cross_entropy(logits, labels),
                                                tensor_cross_entropy(tensor_transpose(logits, 0, 1), labels)), 0.5);
    int rc = tensor_backward(loss, NULL);
    double sync;
    if (rc == 0) rc = tensor_item(loss, &sync);  // waits for the GPU
    tensor_scope_end();
    param_list_zero_grad(&m->params);
    return rc;
}

int main(int argc, char **argv) {
    sysinfo_tune_openmp(argv);
    char *model = "clip-tiny", *configs = NULL, *device = "cpu";
    bool bf16 = false;
    long batch = 128, steps = 10, warmup = 2, threads = 0;
    arg_spec specs[] = {
        {"model", ARG_STR, &model, "model config name or path", false},
        {"configs", ARG_STR, &configs, "folder of model configs", false},
        {"batch-size", ARG_INT, &batch, "samples per step", false},
        {"steps", ARG_INT, &steps, "timed steps", false},
        {"warmup", ARG_INT, &warmup, "untimed steps first", false},
        {"threads", ARG_INT, &threads, "intra-op threads (0: one per core)", false},
        {"device", ARG_STR, &device, "cpu or cuda", false},
        {"bf16", ARG_FLAG, &bf16, "bf16 autocast (GPU)", false},
    };
    int n_specs = sizeof specs / sizeof specs[0];
    int rc = args_parse(specs, n_specs, argc - 1, argv + 1, NULL, 0, NULL);
    if (rc) {
        if (rc > 0) args_print_help(specs, n_specs, "bench_step [options]");
        else fprintf(stderr, "bench_step: %s\n", err_msg());
        return rc > 0 ? 0 : 2;
    }
    char path[1024];
    clip_config cfg;
    if (clip_config_find(model, configs, path, sizeof path) || clip_config_load(path, &cfg)) {
        fprintf(stderr, "bench_step: %s\n", err_msg());
        return 1;
    }
    tensor_set_threads((int)threads);
    char blas[512];
    sysinfo_blas(blas, sizeof blas);
    printf("model %s, batch %ld, libtorch %s, %d threads, OMP_WAIT_POLICY=%s, BLAS: %s\n", cfg.name, batch,
           tensor_torch_version(), tensor_get_threads(), getenv("OMP_WAIT_POLICY"), blas);

    tensor_device dev;
    if (tensor_device_parse(device, &dev) != 0) {
        fprintf(stderr, "bench_step: %s\n", err_msg());
        return 1;
    }
    clip_model *m = clip_model_init(&cfg, 0);
    tensor_generator *g = tensor_generator_new(1, TENSOR_CPU);
    int64_t img_shape[4] = {batch, 3, cfg.vision.image_size, cfg.vision.image_size};
    tensor *host_images = tensor_normal(img_shape, 4, 0, 1, TENSOR_F32, TENSOR_CPU, g);
    int text_len;
    tensor *host_tokens = synthetic_tokens(batch, cfg.text.context_length, cfg.text.vocab_size, 7, &text_len);
    tensor *images = tensor_to_device(host_images, dev, false), *tokens = tensor_to_device(host_tokens, dev, false);
    if (!m || !images || !tokens || clip_model_to_device(m, dev) != 0) {
        fprintf(stderr, "bench_step: %s\n", err_msg());
        return 1;
    }
    for (long i = 0; i < warmup; i++)
        if (run_step(m, images, tokens, bf16)) return fprintf(stderr, "bench_step: %s\n", err_msg()), 1;
    double t0 = now_s();
    for (long i = 0; i < steps; i++)
        if (run_step(m, images, tokens, bf16)) return fprintf(stderr, "bench_step: %s\n", err_msg()), 1;
    double per_step = (now_s() - t0) / (double)steps;
    double flops = clip_cost_step_flops(&cfg, (double)batch, text_len);
    printf("clipc   %-10s batch %4ld: %8.1f ms/step %8.1f samples/s %7.1f GFLOP/s (text tower on %d of %d positions)\n",
           cfg.name, batch, per_step * 1e3, batch / per_step, flops / per_step * 1e-9, text_len, cfg.text.context_length);
    tensor_free(images);
    tensor_free(tokens);
    tensor_free(host_images);
    tensor_free(host_tokens);
    tensor_generator_free(g);
    clip_model_free(m);
    return 0;
}
