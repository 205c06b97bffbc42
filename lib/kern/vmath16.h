/* vmath16.h -- vmath.h's functions in 16 lanes of AVX-512, named f_x16
 * (vexp_x16, vncdf_x16, ...), for the files that choose AVX-512 at run
 * time (gelu.c, attn512.c): each function carries the target attribute,
 * so the build itself needs no -mavx512f, and a caller must check the CPU
 * first. The fused multiply-add is one where vec.h's vfma is one (the
 * build targets FMA) and a*b + c where it is not, so that the 16 lanes
 * give the 8 lanes' bits in either build. */
#ifndef MIM_VMATH16_H
#define MIM_VMATH16_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <stdint.h>

#define MIM_HAVE_X16 1
#define T512 __attribute__((target("avx512f,avx2,fma")))

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

T512 static inline __attribute__((always_inline)) v16f
vdup_x16(float x)
{
	return (v16f){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x};
}

T512 static inline __attribute__((always_inline)) v16f
vfma_x16(v16f a, v16f b, v16f c)
{
#ifdef __FMA__
	return (v16f)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#else
	return a * b + c;
#endif
}

#define VF v16f
#define VI v16i
#define VN(f) f##_x16
#define VFN T512 static inline __attribute__((always_inline))
#define VDUP vdup_x16
#define VFMA vfma_x16
#include "vmath.h"

#endif
#endif
