// clipc info: the build and compute environment (libtorch version, CUDA, BLAS, threads, cores).
#include <stdio.h>

#include "common/sysinfo.h"
#include "shim/tensor.h"
#include "train/commands.h"

int cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    char blas[512];
    sysinfo_blas(blas, sizeof blas);
    printf("libtorch  %s (%s)\n", tensor_torch_version(),
           tensor_has_cuda_build() ? "CUDA build" : "CPU build");
    printf("GPUs      %d\n", tensor_cuda_device_count());
    printf("BLAS      %s\n", blas);
    printf("threads   %d (of %d cores)\n", tensor_get_threads(), sysinfo_cores());
    return 0;
}
