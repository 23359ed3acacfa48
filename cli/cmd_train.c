// `clipc train`: parses OpenCLIP's training flags (train/options.h) and runs the training. Under a
// launcher only rank 0 prints the set-up; every rank prints its errors.
#include <stdio.h>

#include "cli/commands.h"
#include "common/error.h"
#include "common/sysinfo.h"
#include "distributed/env.h"
#include "shim/tensor.h"
#include "train/train.h"

int cmd_train(int argc, char **argv) {
    train_options o;
    int rc = train_options_parse(&o, argc, argv);
    if (rc != 0) {
        if (rc < 0) fprintf(stderr, "clipc train: %s\n", err_msg());
        return rc < 0 ? 2 : 0;
    }
    dist_env env;
    if (dist_env_read(&env, NULL) == 0 && env.rank == 0) {
        char blas[512];
        sysinfo_blas(blas, sizeof blas);
        printf("clipc train: libtorch %s, %d rank(s), BLAS: %s\n", tensor_torch_version(), env.world_size, blas);
        train_options_print(&o, stdout, false);
    }
    if (train_run(&o) != 0) {
        fprintf(stderr, "clipc train: %s\n", err_msg());
        return 1;
    }
    return 0;
}
