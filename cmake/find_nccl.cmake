# clipc_find_nccl(): finds NCCL's header and library, and the CUDA runtime beside them, in the
# places NCCL is installed, first found wins:
#   1. NCCL_ROOT (a CMake variable or the environment) or NCCL_HOME: where the user says;
#   2. beside libtorch when it is pip's PyTorch: <site-packages>/nvidia/nccl, the nvidia-nccl wheel
#      that torch itself loads (TORCH_INSTALL_PREFIX is <site-packages>/torch);
#   3. CUDA_HOME, CUDA_PATH (the environment);
#   4. the nvidia-nccl wheel in the site-packages of python3 (a virtual environment's when active);
#   5. /usr/local/cuda;
#   6. the system's default paths (Debian's libnccl-dev).
# The wheels ship libnccl.so.2 and libcudart.so.N without the unversioned symlink: those names are
# looked for too. Sets NCCL_INCLUDE_DIR, NCCL_LIBRARY, CUDART_INCLUDE_DIR, CUDART_LIBRARY (empty
# when not found) and NCCL_FOUND_IN, which says where ("pip's PyTorch (...)", "CUDA_HOME (...)").
# NCCL_INCLUDE_DIR and NCCL_LIBRARY are plain variables, looked for again at each configure (they
# hide cache entries of the same names): to choose an NCCL, set NCCL_ROOT.

# Appends "label|root" to the list `out` when root is a folder.
function(_clipc_nccl_candidate out label root)
  if(root AND IS_DIRECTORY "${root}")
    set(${out} ${${out}} "${label}|${root}" PARENT_SCOPE)
  endif()
endfunction()

# The nvidia/nccl folders in python3's sys.path (site-packages, a venv's, PYTHONPATH's).
function(_clipc_nccl_python_roots out)
  set(roots "")
  find_program(CLIPC_PYTHON3 NAMES python3 python)
  if(CLIPC_PYTHON3)
    execute_process(COMMAND ${CLIPC_PYTHON3} -c "import sys; print(';'.join(sys.path))"
                    OUTPUT_VARIABLE paths OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
    if(rc EQUAL 0)
      foreach(p IN LISTS paths)
        if(p AND IS_DIRECTORY "${p}/nvidia/nccl")
          list(APPEND roots "${p}/nvidia/nccl")
        endif()
      endforeach()
    endif()
  endif()
  set(${out} ${roots} PARENT_SCOPE)
endfunction()

# Looks for nccl.h and libnccl under root only (root "": the system's default paths); sets inc and
# lib (empty when not both there).
# (The finds go through a cache entry that is dropped at once: NO_CACHE needs CMake 3.21.)
function(_clipc_nccl_in root inc lib)
  if(root)
    set(where PATHS "${root}" NO_DEFAULT_PATH)
  endif()
  find_path(_clipc_nccl_inc nccl.h ${where} PATH_SUFFIXES include)
  find_library(_clipc_nccl_lib NAMES nccl libnccl.so.2 ${where} PATH_SUFFIXES lib64 lib)
  if(_clipc_nccl_inc AND _clipc_nccl_lib)
    set(${inc} "${_clipc_nccl_inc}" PARENT_SCOPE)
    set(${lib} "${_clipc_nccl_lib}" PARENT_SCOPE)
  else()
    set(${inc} "" PARENT_SCOPE)
    set(${lib} "" PARENT_SCOPE)
  endif()
  unset(_clipc_nccl_inc CACHE)
  unset(_clipc_nccl_lib CACHE)
endfunction()

# The CUDA runtime: CMake's CUDA::cudart when a toolkit was found, else next to NCCL (the pip
# wheel's nvidia/cuda_runtime beside nvidia/nccl), CUDA_HOME, /usr/local/cuda or the system.
macro(_clipc_find_cudart nccl_root)
  set(_clipc_cudart_hints "${nccl_root}" "${nccl_root}/../cuda_runtime" /usr/local/cuda ENV CUDA_HOME ENV CUDA_PATH)
  find_path(CUDART_INCLUDE_DIR cuda_runtime_api.h HINTS ${_clipc_cudart_hints} PATH_SUFFIXES include)
  if(TARGET CUDA::cudart)
    set(CUDART_LIBRARY CUDA::cudart)
  else()
    find_library(CUDART_LIBRARY NAMES cudart libcudart.so.13 libcudart.so.12 libcudart.so.11.0
                 NAMES_PER_DIR HINTS ${_clipc_cudart_hints} PATH_SUFFIXES lib64 lib)
  endif()
  set(CUDART_INCLUDE_DIR "${CUDART_INCLUDE_DIR}" PARENT_SCOPE)
  set(CUDART_LIBRARY "${CUDART_LIBRARY}" PARENT_SCOPE)
endmacro()

function(clipc_find_nccl)
  set(candidates "")
  if(NCCL_ROOT)
    _clipc_nccl_candidate(candidates "NCCL_ROOT" "${NCCL_ROOT}")
  endif()
  _clipc_nccl_candidate(candidates "NCCL_ROOT" "$ENV{NCCL_ROOT}")
  _clipc_nccl_candidate(candidates "NCCL_HOME" "$ENV{NCCL_HOME}")
  if(TORCH_INSTALL_PREFIX)
    get_filename_component(beside_torch "${TORCH_INSTALL_PREFIX}/../nvidia/nccl" ABSOLUTE)
    _clipc_nccl_candidate(candidates "pip's PyTorch (the nvidia-nccl wheel beside it)" "${beside_torch}")
  endif()
  _clipc_nccl_candidate(candidates "CUDA_HOME" "$ENV{CUDA_HOME}")
  _clipc_nccl_candidate(candidates "CUDA_PATH" "$ENV{CUDA_PATH}")
  _clipc_nccl_python_roots(python_roots)
  foreach(r IN LISTS python_roots)
    _clipc_nccl_candidate(candidates "the nvidia-nccl wheel in python3's site-packages" "${r}")
  endforeach()
  _clipc_nccl_candidate(candidates "/usr/local/cuda" "/usr/local/cuda")
  list(APPEND candidates "the system's paths|")
  set(found_in "")
  foreach(c IN LISTS candidates)
    string(FIND "${c}" "|" bar)
    string(SUBSTRING "${c}" 0 ${bar} label)
    math(EXPR start "${bar} + 1")
    string(SUBSTRING "${c}" ${start} -1 root)
    _clipc_nccl_in("${root}" inc lib)
    if(inc)
      set(found_in "${label}")
      if(root)
        set(found_in "${label} (${root})")
      else()
        get_filename_component(root "${inc}/.." ABSOLUTE)
      endif()
      _clipc_find_cudart("${root}")
      break()
    endif()
  endforeach()
  set(NCCL_INCLUDE_DIR "${inc}" PARENT_SCOPE)
  set(NCCL_LIBRARY "${lib}" PARENT_SCOPE)
  set(NCCL_FOUND_IN "${found_in}" PARENT_SCOPE)
endfunction()
