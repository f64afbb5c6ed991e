/* xentcore/_fused_v3.c: the fused logits kernel for x86-64-v3 (AVX2 + FMA), 4 float64 lanes. */
#include "_fused.h"

#if XC_LEVELS
#include <immintrin.h> /* the library headers before the target switch */
#include <math.h>
#include <string.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target(XC_V3_FEATURES))), apply_to = function)
#else
#pragma GCC target("arch=x86-64-v3")
#endif
#define XC_LANES 4
#define XC_ISA 3
#define XC_ENTRY xc_rows_v3
#include "_fused_body.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int xc_no_v3; /* not x86-64 with GCC 12+ / Clang 14+: nothing to build */
#endif
