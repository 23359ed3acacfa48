// clipc: the command-line driver. Dispatches to one subcommand per job.
#include <stdio.h>
#include <string.h>

#include "train/commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"info", cmd_info, "show the build, libtorch, BLAS and thread count"},
    {"shards", cmd_shards, "convert images with captions or labels into HDF5 shards"},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static void usage(void) {
    printf("usage: clipc COMMAND [options]   (clipc COMMAND --help for its options)\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) printf("  %-18s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "clipc: unknown command '%s' (see clipc --help)\n", argv[1]);
    return 2;
}
