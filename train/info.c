// `clipc info`: what this build computes with (libtorch, devices, BLAS, threads).
#include <stdio.h>

#include "common/error.h"
#include "common/sysinfo.h"
#include "shim/tensor.h"
#include "train/commands.h"

int cmd_info(int argc, char **argv) {
    (void)argv;
    if (argc > 0) {
        fprintf(stderr, "clipc info: takes no arguments\n");
        return 2;
    }
    tensor_set_threads(0);
    char blas[512];
    sysinfo_blas(blas, sizeof blas);
    printf("libtorch      %s (%s)\n", tensor_torch_version(), tensor_has_cuda_build() ? "CUDA build" : "CPU build");
    printf("GPUs          %d\n", tensor_cuda_device_count());
    printf("cores         %d\n", sysinfo_cores());
    printf("torch threads %d\n", tensor_get_threads());
    printf("BLAS          %s\n", blas);
    return 0;
}
