# Decides, and reports in one status line each, which optional accelerated parts this build
# compiles: a CUDA-enabled libtorch, the NCCL backend of shim/dist (multi-GPU) and the Gloo backend
# (multi-process CPU). Sets CLIPC_HAVE_CUDA, CLIPC_HAVE_NCCL (with NCCL_INCLUDE_DIR, NCCL_LIBRARY,
# CUDART_INCLUDE_DIR, CUDART_LIBRARY, NCCL_FOUND_IN) and CLIPC_HAVE_GLOO (with GLOO_INCLUDE_DIR).

set(CLIPC_HAVE_CUDA OFF)
if(TORCH_CXX_FLAGS MATCHES "CUDA" OR TARGET torch_cuda OR TARGET c10_cuda OR CUDA_FOUND)
  set(CLIPC_HAVE_CUDA ON)
endif()
message(STATUS "clipc: libtorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}")
message(STATUS "clipc: CUDA-enabled libtorch ........ ${CLIPC_HAVE_CUDA}")

# NCCL's C API with the CUDA runtime it needs (cudaStream_t, events), looked for where CUDA and
# pip's PyTorch put them (cmake/find_nccl.cmake). Built with a CPU-only libtorch too, so that CI
# compiles it; it then refuses to start (no CUDA tensors exist).
include(${CMAKE_CURRENT_LIST_DIR}/find_nccl.cmake)
set(CLIPC_HAVE_NCCL OFF)
set(nccl_status "OFF (CLIPC_NCCL=OFF)")
if(CLIPC_NCCL)
  clipc_find_nccl()
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY AND CUDART_INCLUDE_DIR AND CUDART_LIBRARY)
    set(CLIPC_HAVE_NCCL ON)
    if(CLIPC_HAVE_CUDA)
      set(nccl_status "ON ${NCCL_LIBRARY}")
    else()
      set(nccl_status "ON ${NCCL_LIBRARY} (compiled; runs only with a CUDA-enabled libtorch)")
    endif()
  elseif(NCCL_FOUND_IN)
    set(nccl_status "OFF (NCCL in ${NCCL_FOUND_IN}, but cuda_runtime_api.h or libcudart not found; set CUDA_HOME)")
  else()
    string(CONCAT nccl_status "OFF (nccl.h and libnccl not found in NCCL_ROOT, beside pip's PyTorch, in CUDA_HOME, "
                  "python3's nvidia-nccl wheel, /usr/local/cuda or the system's paths; set NCCL_ROOT)")
  endif()
endif()
message(STATUS "clipc: NCCL backend (multi-GPU) ..... ${nccl_status}")
if(CLIPC_HAVE_NCCL)
  message(STATUS "clipc: NCCL found in ${NCCL_FOUND_IN}")
endif()

# Gloo through libtorch's c10d (ProcessGroupGloo.hpp is compiled with USE_C10D_GLOO).
set(CLIPC_HAVE_GLOO OFF)
set(gloo_status "OFF (CLIPC_GLOO=OFF)")
if(CLIPC_GLOO)
  find_path(GLOO_INCLUDE_DIR gloo/config.h HINTS ${TORCH_INCLUDE_DIRS})
  find_path(C10D_GLOO_INCLUDE_DIR torch/csrc/distributed/c10d/ProcessGroupGloo.hpp HINTS ${TORCH_INCLUDE_DIRS})
  if(GLOO_INCLUDE_DIR AND C10D_GLOO_INCLUDE_DIR)
    set(CLIPC_HAVE_GLOO ON)
    set(gloo_status "ON ${GLOO_INCLUDE_DIR}/gloo")
  else()
    set(gloo_status "OFF (gloo/config.h or c10d's ProcessGroupGloo.hpp not found; install libgloo-dev)")
  endif()
endif()
message(STATUS "clipc: Gloo backend (multi-process CPU) ${gloo_status}")
