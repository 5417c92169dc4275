/* Direct convolution of one channels-last float32 image, in vector registers: AVX-512
 * (16 floats a vector, 32 registers) or AVX2 + FMA (8 floats, 16 registers), chosen at run
 * time (the compiled kernels of ext/direct.pyx; npdistill/kernels/reference/direct.py is
 * the specification).
 *
 * Every pass is one register tile repeated: P values broadcast (ps floats apart) times
 * V vectors of output channels (the last one masked where the channels do not fill it),
 * summed in P x V accumulators that stay in registers over a three-level loop, then
 * stored (or added) once, unmasked where the vector is full.
 *
 *   forward / input gradient:
 *     y[i, j0 + p, f] = bias[f] + sum_{a, b, c} xp[i + a][j0 + p + b][c] wt[(a, b, c), f]
 *     the P positions of a row are P neighbours, C floats apart, for every (a, b, c);
 *   weight gradient: acc[(a, q0 + p), f] += sum_{i, j} xp[i + a][j][q0 + p] dy[i, j, f]
 *     with q = b C + c: for a fixed a, (b, c) runs over consecutive floats of the
 *     (Hp, Wp, C) padded image.
 * A padded image is copied into a thread's buffer only where there is padding.
 *
 * Each output value is the same sequence of fused multiply-adds in either instruction set
 * (bias, then the (a, b, c) terms in order): AVX2 and AVX-512 give the same bits. The tile
 * logic is written once (direct_tile.h) and included once per set.
 *
 * No im2col matrix is written and no BLAS is called. Built only by GNU-compatible
 * compilers on x86-64, and not where NPD_NO_X86_KERNELS is defined (a build for checking
 * the portable path: NPDISTILL_NO_X86_KERNELS=1 pip install .); npd_direct_isa() says
 * which set this CPU runs: 2 AVX-512F, 1 AVX2 + FMA, 0 neither.
 */
#ifndef NPD_DIRECT_CONV_H
#define NPD_DIRECT_CONV_H

#include <stddef.h>
#include <string.h>

typedef struct { ptrdiff_t n, s, w; } npd_level;    /* count, stride of s, stride of w */

/* the size of chunk t when `count` values are cut into `chunks` near-equal chunks, and
 * where it starts: 8 positions as 4 + 4 rather than 6 + 2, whose second tile would have
 * too few accumulators to keep the FMA units busy */
static inline ptrdiff_t npd_chunk(ptrdiff_t count, ptrdiff_t chunks, ptrdiff_t t,
                                  ptrdiff_t *start)
{
    ptrdiff_t base = count / chunks, extra = count % chunks;
    *start = t * base + (t < extra ? t : extra);
    return base + (t < extra);
}

/* x (H, W, C) zero-padded to (Hp, Wp, C), pad_top rows above and pad_left columns to the
 * left, into buf; x itself where there is no padding */
static const float *npd_padded(const float *x, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C,
                               ptrdiff_t Hp, ptrdiff_t Wp, ptrdiff_t pad_top,
                               ptrdiff_t pad_left, float *buf)
{
    if (pad_top == 0 && pad_left == 0 && Hp == H && Wp == W)
        return x;
    memset(buf, 0, (size_t)(Hp * Wp * C) * sizeof(float));
    for (ptrdiff_t r = 0; r < H; r++)
        memcpy(buf + ((r + pad_top) * Wp + pad_left) * C, x + r * W * C,
               (size_t)(W * C) * sizeof(float));
    return buf;
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(NPD_NO_X86_KERNELS)
#include <immintrin.h>

static int npd_direct_isa(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return 2;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
}

#define NPD_CAT2(a, b) a##_##b
#define NPD_CAT(a, b) NPD_CAT2(a, b)
#define NPD_NAME(x) NPD_CAT(x, NPD_ISA)
#define NPD_INLINE static inline __attribute__((always_inline)) NPD_TARGET

/* The P x V accumulators are named variables, not an array, so that the compiler keeps
 * them in registers; the statements for p >= P or v >= V vanish where P and V are
 * constants (every call below). */
#define NPD_FOR_P(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define NPD_DECLARE(p) NPD_VEC c##p##_0 = b0, c##p##_1 = b1, c##p##_2 = b2, c##p##_3 = b3;
#define NPD_FMA(p) if ((p) < P) {                                                   \
        NPD_VEC x = NPD_SET1(sp[(p) * ps]);                                       \
        c##p##_0 = NPD_FMADD(x, w0, c##p##_0);                                    \
        if (V > 1) c##p##_1 = NPD_FMADD(x, w1, c##p##_1);                         \
        if (V > 2) c##p##_2 = NPD_FMADD(x, w2, c##p##_2);                         \
        if (V > 3) c##p##_3 = NPD_FMADD(x, w3, c##p##_3);                         \
    }
/* vector v of a tile: the mask `last` where it is the last (unless full) */
#define NPD_PUT(o, v, c) \
    NPD_NAME(npd_put)(o, V == (v) + 1 ? last : NPD_MASK_ALL, V == (v) + 1 ? full : 1, c, \
                      accumulate, rectify)
#define NPD_STORE(p) if ((p) < P) {                                                 \
        float *o = out + (p) * ostride;                                           \
        NPD_PUT(o, 0, c##p##_0);                                                  \
        if (V > 1) NPD_PUT(o + NPD_LANES, 1, c##p##_1);                           \
        if (V > 2) NPD_PUT(o + 2 * NPD_LANES, 2, c##p##_2);                       \
        if (V > 3) NPD_PUT(o + 3 * NPD_LANES, 3, c##p##_3);                       \
    }

/* npd_tile with P, V and full known at compile time in every case (the accumulators in
 * registers, the last vector's loads masked only where it is not full) */
#define NPD_CASE_FULL(P, V, FULL) case ((P) * 8 + (V)) * 2 + (FULL): \
    NPD_NAME(npd_tile)(P, V, last, FULL, s, ps, w, lv, bias, out, ostride, accumulate, \
                       rectify); break;
#define NPD_CASE(P, V) NPD_CASE_FULL(P, V, 0) NPD_CASE_FULL(P, V, 1)
#define NPD_CASES_6(V) NPD_CASE(1, V) NPD_CASE(2, V) NPD_CASE(3, V) NPD_CASE(4, V) \
    NPD_CASE(5, V) NPD_CASE(6, V)
#define NPD_CASES_8(V) NPD_CASES_6(V) NPD_CASE(7, V) NPD_CASE(8, V)
#define NPD_CASES_12(V) NPD_CASES_8(V) NPD_CASE(9, V) NPD_CASE(10, V) NPD_CASE(11, V) \
    NPD_CASE(12, V)

/* AVX-512: 32 registers of 16 floats, masks in k registers */
#define NPD_ISA avx512
#define NPD_TARGET __attribute__((target("avx512f,fma")))
#define NPD_LANES 16
#define NPD_VEC __m512
#define NPD_MASK __mmask16
#define NPD_MASK_ALL ((__mmask16)0xFFFF)
#define NPD_MASK_TAIL(t) ((__mmask16)((1u << (t)) - 1))
#define NPD_ZERO() _mm512_setzero_ps()
#define NPD_SET1(x) _mm512_set1_ps(x)
#define NPD_FMADD(a, b, c) _mm512_fmadd_ps(a, b, c)
#define NPD_ADD(a, b) _mm512_add_ps(a, b)
#define NPD_MAX(a, b) _mm512_max_ps(a, b)
#define NPD_LOAD(p) _mm512_loadu_ps(p)
#define NPD_STOREU(p, v) _mm512_storeu_ps(p, v)
#define NPD_MASKLOAD(m, p) _mm512_maskz_loadu_ps(m, p)
#define NPD_MASKSTORE(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define NPD_VMAX 4                      /* vectors of output channels in a tile (<= 4) */
#define NPD_PMAX {0, 12, 12, 8, 6}      /* P x V <= 24 accumulators of 32 registers */
#include "direct_tile.h"
#undef NPD_ISA
#undef NPD_TARGET
#undef NPD_LANES
#undef NPD_VEC
#undef NPD_MASK
#undef NPD_MASK_ALL
#undef NPD_MASK_TAIL
#undef NPD_ZERO
#undef NPD_SET1
#undef NPD_FMADD
#undef NPD_ADD
#undef NPD_MAX
#undef NPD_LOAD
#undef NPD_STOREU
#undef NPD_MASKLOAD
#undef NPD_MASKSTORE
#undef NPD_PMAX
#undef NPD_VMAX

/* AVX2 + FMA: 16 registers of 8 floats, masks as vectors of 8 ints (all bits set: a lane
 * taken); max_ps as AVX-512's: NaN stays NaN */
#define NPD_ISA avx2
#define NPD_TARGET __attribute__((target("avx2,fma")))
#define NPD_LANES 8
#define NPD_VEC __m256
#define NPD_MASK __m256i
#define NPD_MASK_ALL _mm256_set1_epi32(-1)
#define NPD_MASK_TAIL(t) _mm256_cmpgt_epi32(_mm256_set1_epi32(t), \
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define NPD_ZERO() _mm256_setzero_ps()
#define NPD_SET1(x) _mm256_set1_ps(x)
#define NPD_FMADD(a, b, c) _mm256_fmadd_ps(a, b, c)
#define NPD_ADD(a, b) _mm256_add_ps(a, b)
#define NPD_MAX(a, b) _mm256_max_ps(a, b)
#define NPD_LOAD(p) _mm256_loadu_ps(p)
#define NPD_STOREU(p, v) _mm256_storeu_ps(p, v)
#define NPD_MASKLOAD(m, p) _mm256_maskload_ps(p, m)
#define NPD_MASKSTORE(p, m, v) _mm256_maskstore_ps(p, m, v)
#define NPD_VMAX 2                      /* 2 x 8 channels: 6 positions, 12 accumulators */
#define NPD_PMAX {0, 12, 6}             /* P x V accumulators + V weights + 1 <= 16 */
#include "direct_tile.h"

/* one image's pass at an instruction set: 2 AVX-512, 1 AVX2 (at most npd_direct_isa()) */
static void npd_correlate_image(int isa, const float *x, ptrdiff_t H, ptrdiff_t W,
                                ptrdiff_t C, const float *wt, const float *bias, ptrdiff_t F,
                                ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t pad_top,
                                ptrdiff_t pad_left, float *y, ptrdiff_t oh, ptrdiff_t ow,
                                float *buf, int rectify)
{
    (isa == 2 ? npd_correlate_image_avx512 : npd_correlate_image_avx2)(
        x, H, W, C, wt, bias, F, kh, kw, pad_top, pad_left, y, oh, ow, buf, rectify);
}

static void npd_weight_gradient_image(int isa, const float *x, ptrdiff_t H, ptrdiff_t W,
                                      ptrdiff_t C, const float *dy, ptrdiff_t oh,
                                      ptrdiff_t ow, ptrdiff_t F, ptrdiff_t kh, ptrdiff_t kw,
                                      ptrdiff_t pad_top, ptrdiff_t pad_left, float *acc,
                                      float *buf)
{
    (isa == 2 ? npd_weight_gradient_image_avx512 : npd_weight_gradient_image_avx2)(
        x, H, W, C, dy, oh, ow, F, kh, kw, pad_top, pad_left, acc, buf);
}

#else   /* not GNU C on x86-64, or built without: the direct kernels are absent, im2col runs
         * (npd_direct_isa() 0: ext/direct.pyx refuses every call before it gets here) */

static int npd_direct_isa(void) { return 0; }
static void npd_correlate_image(int isa, const float *x, ptrdiff_t H, ptrdiff_t W,
                                ptrdiff_t C, const float *wt, const float *bias, ptrdiff_t F,
                                ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t pad_top,
                                ptrdiff_t pad_left, float *y, ptrdiff_t oh, ptrdiff_t ow,
                                float *buf, int rectify) {}
static void npd_weight_gradient_image(int isa, const float *x, ptrdiff_t H, ptrdiff_t W,
                                      ptrdiff_t C, const float *dy, ptrdiff_t oh,
                                      ptrdiff_t ow, ptrdiff_t F, ptrdiff_t kh, ptrdiff_t kw,
                                      ptrdiff_t pad_top, ptrdiff_t pad_left, float *acc,
                                      float *buf) {}
#endif

#endif
