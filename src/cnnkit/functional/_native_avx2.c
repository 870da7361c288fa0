/* The kernels of _native_kernels.h for AVX2 with FMA (8 floats a vector). */
#include "_native_kernels.h"
