// `clipc finetune`: few-shot adaptation of a CLIP checkpoint to a labelled set (docs/fewshot.md):
// parses the options, runs finetune/finetune.h's finetune_run and prints its progress and the table
// of accuracies (zero-shot, linear probe, fine-tuned, best WiSE-FT).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "eval/zeroshot.h"
#include "finetune/finetune.h"

typedef struct {
    char *train_data, *test_data, *checkpoint, *model, *model_configs, *vocab, *method, *out_dir, *output;
    char *templates, *classnames, *device;
    long shots, seed, epochs, batch_size, warmup, workers, threads, test_num_samples, log_every;
    double probe_lambda, lr, wd, wiseft_alpha;
} finetune_cli;

// ---- options ---------------------------------------------------------------------------------

static int parse_options(finetune_cli *o, int argc, char **argv) {
    finetune_options d = finetune_options_default();
    *o = (finetune_cli){.vocab = getenv("CLIPC_VOCAB"), .method = "all", .shots = d.shots, .epochs = d.epochs,
                        .batch_size = d.batch_size, .warmup = d.warmup, .workers = d.workers, .log_every = 10,
                        .probe_lambda = d.probe_lambda, .lr = d.lr, .wd = d.wd, .wiseft_alpha = d.wiseft_alpha};
    arg_spec specs[] = {
        {"train-data", ARG_STR, &o->train_data, "labelled manifest the shots are drawn from", false},
        {"test-data", ARG_STR, &o->test_data, "labelled manifest for the test accuracy", false},
        {"checkpoint", ARG_STR, &o->checkpoint, "model weights: a file (safetensors, torch.save zip, TorchScript) or an OpenCLIP tag of --model", false},
        {"model", ARG_STR, &o->model, "model config name or JSON (default: the checkpoint's clipc.config)", false},
        {"model-configs", ARG_STR, &o->model_configs, "folder of model configs (default: the shipped ones)", false},
        {"vocab", ARG_STR, &o->vocab, "BPE merges file (default: $CLIPC_VOCAB)", false},
        {"shots", ARG_INT, &o->shots, "training samples per class, K (16)", false},
        {"seed", ARG_INT, &o->seed, "seed of the shot draw and of fine-tuning's data order (0)", false},
        {"method", ARG_STR, &o->method, "probe, finetune or all (all)", false},
        {"out-dir", ARG_STR, &o->out_dir, "folder for the shots, heads and weights (required)", false},
        {"output", ARG_STR, &o->output, "JSON file of the results", false},
        {"zeroshot-templates", ARG_STR, &o->templates, "templates file, one per line with {} (default: '" ZEROSHOT_DEFAULT_TEMPLATE "')", false},
        {"zeroshot-classnames", ARG_STR, &o->classnames, "class names file (default: the training set's)", false},
        {"probe-lambda", ARG_FLOAT, &o->probe_lambda, "fixed L2 strength of the probe (default: chosen on held-out shots)", false},
        {"epochs", ARG_INT, &o->epochs, "fine-tuning epochs over the shots (20)", false},
        {"batch-size", ARG_INT, &o->batch_size, "fine-tuning batch size, at most the number of shots (32)", false},
        {"lr", ARG_FLOAT, &o->lr, "fine-tuning peak learning rate (1e-5)", false},
        {"wd", ARG_FLOAT, &o->wd, "fine-tuning weight decay (0.1)", false},
        {"warmup", ARG_INT, &o->warmup, "fine-tuning warmup steps (default: a tenth of the steps)", false},
        {"wiseft-alpha", ARG_FLOAT, &o->wiseft_alpha, "alpha of the interpolated model saved (0.5)", false},
        {"test-num-samples", ARG_INT, &o->test_num_samples, "test on the first N test samples only (0: all)", false},
        {"workers", ARG_INT, &o->workers, "data loading threads (2)", false},
        {"device", ARG_STR, &o->device, "cpu, cuda or cuda:N (default: cuda when a GPU is present)", false},
        {"threads", ARG_INT, &o->threads, "intra-op threads (0: one per core)", false},
        {"log-every-n-steps", ARG_INT, &o->log_every, "fine-tuning progress line every N steps (10)", false},
    };
    int n = (int)(sizeof specs / sizeof specs[0]);
    int rc = args_parse(specs, n, argc, argv, NULL, 0, NULL);
    if (rc == 1) args_print_help(specs, n, "clipc finetune --train-data M --test-data M --checkpoint F --out-dir D [options]");
    if (rc != 0) return rc;
    if (o->log_every < 1) o->log_every = 1;
    if (strcmp(o->method, "probe") && strcmp(o->method, "finetune") && strcmp(o->method, "all"))
        return err_set("--method must be probe, finetune or all, got '%s'", o->method);
    if (o->shots < 1 || o->shots > 1000000) return err_set("--shots must be between 1 and 1000000, got %ld", o->shots);
    return 0;
}

// The library's options from the command's (checked by finetune_options_check).
static finetune_options library_options(const finetune_cli *c) {
    finetune_options o = finetune_options_default();
    o.session = (session_options){.model = c->model, .model_configs = c->model_configs, .pretrained = c->checkpoint,
                                  .vocab = c->vocab, .device = c->device, .threads = (int)c->threads};
    o.train_data = c->train_data, o.test_data = c->test_data, o.out_dir = c->out_dir, o.output = c->output;
    o.templates = c->templates, o.classnames = c->classnames;
    o.probe = strcmp(c->method, "finetune") != 0, o.finetune = strcmp(c->method, "probe") != 0;
    o.shots = (int)c->shots, o.seed = c->seed, o.epochs = (int)c->epochs, o.batch_size = (int)c->batch_size;
    o.warmup = c->warmup, o.probe_lambda = c->probe_lambda, o.lr = c->lr, o.wd = c->wd, o.wiseft_alpha = c->wiseft_alpha;
    o.test_num_samples = c->test_num_samples, o.workers = (int)c->workers;
    return o;
}

static void print_probe(const finetune_event *e) {
    const probe_report *r = e->probe;
    printf("linear probe: lambda %g (%s), %d L-BFGS iterations%s, top1 %.4f -> %s\n", r->lambda,
           r->swept ? "chosen on held-out shots" : "fixed", r->fit.iterations, r->fit.converged ? "" : " (not converged)",
           e->top1, e->path);
}

static void print_event(void *ctx, const finetune_event *e) {
    const finetune_cli *c = ctx;
    switch (e->kind) {
    case FINETUNE_EVENT_SHOTS:
        printf("shots: %ld per class x %d classes drawn from %s (seed %ld) -> %s\n", c->shots, e->n_classes,
               c->train_data, c->seed, e->path);
        break;
    case FINETUNE_EVENT_ZEROSHOT:
        printf("zero-shot: top1 %.4f on %lld test images (%d templates)\n", e->top1, (long long)e->n_test, e->n_templates);
        break;
    case FINETUNE_EVENT_PROBE: print_probe(e); break;
    case FINETUNE_EVENT_TRAIN:
        printf("finetune: %lld steps (%ld epochs of batch %d), lr %g, wd %g, warmup %lld\n", (long long)e->total,
               c->epochs, e->batch, c->lr, c->wd, (long long)e->warmup);
        break;
    case FINETUNE_EVENT_STEP:
        if (e->step % c->log_every == 0 || e->step == e->total || e->step == 1)
            printf("finetune: step %lld/%lld epoch %lld loss %.5f lr %.3g\n", (long long)e->step, (long long)e->total,
                   (long long)e->epoch, e->loss, e->lr);
        break;
    case FINETUNE_EVENT_WISEFT:
        if (e->index == 0) printf("WiSE-FT: alpha  top1\n");
        printf("         %5.2f  %.4f\n", e->alpha, e->top1);
        break;
    }
    fflush(stdout);
}

static void print_table(const finetune_options *o, const finetune_result *r) {
    printf("\n%-34s top1 (%lld test images, K = %d)\n", "method", (long long)r->n_test, o->shots);
    printf("%-34s %.4f\n", "zero-shot", r->zeroshot_top1);
    char label[64];
    if (o->probe) {
        snprintf(label, sizeof label, "linear probe (lambda %g)", r->probe_lambda);
        printf("%-34s %.4f\n", label, r->probe_top1);
    }
    if (o->finetune) {
        printf("%-34s %.4f\n", "fine-tuned (alpha 1)", r->finetuned_top1);
        snprintf(label, sizeof label, "WiSE-FT best (alpha %g)", r->best_alpha);
        printf("%-34s %.4f\n", label, r->best_top1);
    }
}

int cmd_finetune(int argc, char **argv) {
    finetune_cli c;
    int rc = parse_options(&c, argc, argv);
    finetune_options o = library_options(&c);
    if (rc == 0) rc = finetune_options_check(&o);
    if (rc != 0) {
        if (rc < 0) fprintf(stderr, "clipc finetune: %s\n", err_msg());
        return rc < 0 ? 2 : 0;
    }
    o.on_event = print_event, o.ctx = &c;
    finetune_result r;
    rc = finetune_run(&o, &r);
    if (rc == 0) print_table(&o, &r);
    if (rc != 0) fprintf(stderr, "clipc finetune: %s\n", err_msg());
    return rc == 0 ? 0 : 1;
}
