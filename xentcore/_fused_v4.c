/* xentcore/_fused_v4.c: the fused logits kernel for x86-64-v4 (AVX-512), 8 float64 lanes. */
#include "_fused.h"

#if XC_LEVELS
#include <immintrin.h> /* the library headers before the target switch */
#include <math.h>
#include <string.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target(XC_V4_FEATURES))), apply_to = function)
#else
#pragma GCC target("arch=x86-64-v4")
#endif
#define XC_LANES 8
#define XC_ISA 4
#define XC_ENTRY xc_rows_v4
#include "_fused_body.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int xc_no_v4; /* not x86-64 with GCC 12+ / Clang 14+: nothing to build */
#endif
