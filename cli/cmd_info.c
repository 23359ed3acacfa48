// `clipc info`: what this build computes with (libtorch, devices, BLAS, threads).
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/sysinfo.h"
#include "distributed/dist.h"
#include "shim/tensor.h"
#include "cli/commands.h"

int cmd_info(int argc, char **argv) {
    if (argc > 0) {
        bool help = !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h");
        fprintf(help ? stdout : stderr, "usage: clipc info   (libtorch, GPUs, cores, threads, BLAS and collective backends)\n");
        return help ? 0 : 2;
    }
    tensor_set_threads(0);
    char blas[512];
    sysinfo_blas(blas, sizeof blas);
    printf("libtorch      %s (%s)\n", tensor_torch_version(), tensor_has_cuda_build() ? "CUDA build" : "CPU build");
    printf("GPUs          %d\n", tensor_cuda_device_count());
    printf("cores         %d\n", sysinfo_cores());
    printf("torch threads %d\n", tensor_get_threads());
    printf("BLAS          %s\n", blas);
    printf("collectives   %s\n", dist_backends_built());
    return 0;
}
