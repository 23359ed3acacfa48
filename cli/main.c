// clipc: the command-line driver. Dispatches to one subcommand per job.
#include <stdio.h>
#include <string.h>

#include "common/sysinfo.h"
#include "cli/commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"info", cmd_info, "show the build, libtorch, BLAS and thread count"},
    {"shards", cmd_shards, "convert images and captions (CSV, folders, webdataset, CIFAR, MNIST, Karpathy) into shards"},
    {"train", cmd_train, "train a CLIP model (OpenCLIP's flags)"},
    {"launch", cmd_launch, "start the ranks of a multi-process run on this node (torchrun's environment)"},
    {"tokenize", cmd_tokenize, "captions on stdin to CLIP token ids on stdout"},
    {"tokenizer", cmd_tokenizer, "tokenizer train (learn BPE merges from captions), tokenizer info"},
    {"plot", cmd_plot, "draw a run's loss, learning rate, logit scale and accuracy curves to PNG"},
    {"eval", cmd_eval, "zero-shot classification and image-text retrieval of a checkpoint"},
    {"benchmark", cmd_benchmark, "many models x many datasets: zero-shot and retrieval runs, one merged table"},
    {"embed", cmd_embed, "images and texts to normalized embeddings (safetensors or .npy)"},
    {"classify", cmd_classify, "zero-shot label probabilities of image files"},
    {"finetune", cmd_finetune, "few-shot: K shots per class, linear probe, fine-tuning with WiSE-FT"},
    {"distill-cache", cmd_distill_cache, "store a distillation teacher's features of a shard set beside the shards"},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static void usage(void) {
    printf("usage: clipc COMMAND [options]   (clipc COMMAND --help for its options)\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) printf("  %-18s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    sysinfo_tune_openmp(argv);
    sysinfo_tune_malloc();
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "clipc: unknown command '%s' (see clipc --help)\n", argv[1]);
    return 2;
}
