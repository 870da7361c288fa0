/* The kernels of _native_kernels.h for AVX-512 (16 floats a vector). */
#define CNNKIT_AVX512
#include "_native_kernels.h"
