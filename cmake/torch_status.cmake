# Reports, one status line each, which optional accelerated parts this build has:
# a CUDA-enabled libtorch, NCCL for multi-GPU training, and Gloo for multi-process CPU training.

set(CLIPC_HAVE_CUDA OFF)
if(TORCH_CXX_FLAGS MATCHES "CUDA" OR TARGET torch_cuda OR TARGET c10_cuda OR CUDA_FOUND)
  set(CLIPC_HAVE_CUDA ON)
endif()
message(STATUS "clipc: libtorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}")
message(STATUS "clipc: CUDA-enabled libtorch ........ ${CLIPC_HAVE_CUDA}")

set(CLIPC_HAVE_NCCL OFF)
if(CLIPC_NCCL)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS /usr/local/cuda/include ENV CUDA_HOME PATH_SUFFIXES include)
  find_library(NCCL_LIBRARY nccl HINTS /usr/local/cuda/lib64 /usr/local/cuda/lib ENV CUDA_HOME PATH_SUFFIXES lib64 lib)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(CLIPC_HAVE_NCCL ON)
  endif()
endif()
message(STATUS "clipc: NCCL (multi-GPU) ............. ${CLIPC_HAVE_NCCL} ${NCCL_LIBRARY}")

set(CLIPC_HAVE_GLOO OFF)
if(CLIPC_GLOO)
  find_path(GLOO_INCLUDE_DIR gloo/config.h)
  find_library(GLOO_LIBRARY gloo)
  if(GLOO_INCLUDE_DIR AND GLOO_LIBRARY)
    set(CLIPC_HAVE_GLOO ON)
  endif()
endif()
message(STATUS "clipc: Gloo (multi-process CPU) ..... ${CLIPC_HAVE_GLOO}")
