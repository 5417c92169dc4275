/* Direct convolution of one channels-last float32 image, in AVX-512 registers (the
 * compiled kernels of ext/direct.pyx; npdistill/kernels/reference/direct.py is the specification).
 *
 * Every pass is one register tile repeated: P values broadcast (ps floats apart) times
 * V vectors of 16 output channels (the last one masked), summed in P x V
 * accumulators that stay in registers over a three-level loop, then stored (or added) once.
 *
 *   forward / input gradient:
 *     y[i, j0 + p, f] = bias[f] + sum_{a, b, c} xp[i + a][j0 + p + b][c] wt[(a, b, c), f]
 *     the P positions of a row are P neighbours, C floats apart, for every (a, b, c);
 *   weight gradient: acc[(a, q0 + p), f] += sum_{i, j} xp[i + a][j][q0 + p] dy[i, j, f]
 *     with q = b C + c: for a fixed a, (b, c) runs over consecutive floats of the
 *     (Hp, Wp, C) padded image.
 * A padded image is copied into a thread's buffer only where there is padding.
 *
 * No im2col matrix is written and no BLAS is called. Built only by GNU-compatible
 * compilers on x86-64; npd_direct_supported() says whether this CPU runs it.
 */
#ifndef NPD_DIRECT_CONV_H
#define NPD_DIRECT_CONV_H

#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#define NPD_TARGET __attribute__((target("avx512f,fma")))
#define NPD_INLINE static inline __attribute__((always_inline)) NPD_TARGET
#define NPD_VMAX 4                      /* vectors of 16 channels in a tile */
#define NPD_PMAX 12                     /* broadcast values in a tile */

/* the positions a tile of V vectors takes: P x V accumulators, V weights, one broadcast */
static const int npd_pmax[NPD_VMAX + 1] = {0, 12, 12, 8, 6};

typedef struct { ptrdiff_t n, s, w; } npd_level;    /* count, stride of s, stride of w */

static int npd_direct_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
}

/* The P x V accumulators are named variables, not an array, so that the compiler keeps
 * them in registers; the statements for p >= P or v >= V vanish where P and V are
 * constants (every call below). */
#define NPD_FOR_P(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define NPD_DECLARE(p) __m512 c##p##_0 = b0, c##p##_1 = b1, c##p##_2 = b2, c##p##_3 = b3;
#define NPD_FMA(p) if ((p) < P) {                                                  \
        __m512 x = _mm512_set1_ps(sp[(p) * ps]);                                        \
        c##p##_0 = _mm512_fmadd_ps(x, w0, c##p##_0);                             \
        if (V > 1) c##p##_1 = _mm512_fmadd_ps(x, w1, c##p##_1);                  \
        if (V > 2) c##p##_2 = _mm512_fmadd_ps(x, w2, c##p##_2);                  \
        if (V > 3) c##p##_3 = _mm512_fmadd_ps(x, w3, c##p##_3);                  \
    }
#define NPD_STORE(p) if ((p) < P) {                                                \
        float *o = out + (p) * ostride;                                          \
        npd_put(o, V == 1 ? last : 0xFFFF, c##p##_0, accumulate, rectify);       \
        if (V > 1) npd_put(o + 16, V == 2 ? last : 0xFFFF, c##p##_1, accumulate, rectify); \
        if (V > 2) npd_put(o + 32, V == 3 ? last : 0xFFFF, c##p##_2, accumulate, rectify); \
        if (V > 3) npd_put(o + 48, last, c##p##_3, accumulate, rectify);         \
    }

/* the V-th vector's lanes: all, or the mask of the chunk's last vector */
NPD_INLINE __m512 npd_get(const float *src, int v, int V, __mmask16 last)
{
    return v >= V ? _mm512_setzero_ps()
                  : v == V - 1 ? _mm512_maskz_loadu_ps(last, src) : _mm512_loadu_ps(src);
}

/* dst (=|+=) r, or max(r, 0) where rectify: a ReLU after the layer (NaN stays NaN: max_ps
 * returns its second operand where either is NaN) */
NPD_INLINE void npd_put(float *dst, __mmask16 m, __m512 r, int accumulate, int rectify)
{
    if (accumulate)
        r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, dst));
    if (rectify)
        r = _mm512_max_ps(_mm512_setzero_ps(), r);
    _mm512_mask_storeu_ps(dst, m, r);
}

/* out[p * ostride + 16 v + l] (=|+=) bias + sum over the three levels of s[p * ps] *
 * w[16 v + l] (then max(., 0) where rectify) */
NPD_INLINE void npd_tile(const int P, const int V, const __mmask16 last, const float *s,
                         const ptrdiff_t ps, const float *w, const npd_level *lv,
                         const float *bias, float *out, const ptrdiff_t ostride,
                         const int accumulate, const int rectify)
{
    __m512 zero = _mm512_setzero_ps();
    __m512 b0 = bias ? npd_get(bias, 0, V, last) : zero;
    __m512 b1 = bias ? npd_get(bias + 16, 1, V, last) : zero;
    __m512 b2 = bias ? npd_get(bias + 32, 2, V, last) : zero;
    __m512 b3 = bias ? npd_get(bias + 48, 3, V, last) : zero;
    NPD_FOR_P(NPD_DECLARE)
    for (ptrdiff_t i1 = 0; i1 < lv[0].n; i1++) {
        for (ptrdiff_t i2 = 0; i2 < lv[1].n; i2++) {
            const float *sp = s + i1 * lv[0].s + i2 * lv[1].s;
            const float *wp = w + i1 * lv[0].w + i2 * lv[1].w;
            for (ptrdiff_t i3 = 0; i3 < lv[2].n; i3++) {
                __m512 w0 = npd_get(wp, 0, V, last), w1 = npd_get(wp + 16, 1, V, last);
                __m512 w2 = npd_get(wp + 32, 2, V, last), w3 = npd_get(wp + 48, 3, V, last);
                NPD_FOR_P(NPD_FMA)
                sp += lv[2].s;
                wp += lv[2].w;
            }
        }
    }
    NPD_FOR_P(NPD_STORE)
}

/* npd_tile with P and V known at compile time in every case (the accumulators in registers) */
#define NPD_CASE(P, V) case (P) * 8 + (V): \
    npd_tile(P, V, last, s, ps, w, lv, bias, out, ostride, accumulate, rectify); break;
#define NPD_CASES_6(V) NPD_CASE(1, V) NPD_CASE(2, V) NPD_CASE(3, V) NPD_CASE(4, V) \
    NPD_CASE(5, V) NPD_CASE(6, V)
#define NPD_CASES_8(V) NPD_CASES_6(V) NPD_CASE(7, V) NPD_CASE(8, V)
#define NPD_CASES_12(V) NPD_CASES_8(V) NPD_CASE(9, V) NPD_CASE(10, V) NPD_CASE(11, V) \
    NPD_CASE(12, V)

static NPD_TARGET void npd_tile_any(int P, int V, __mmask16 last, const float *s,
                                    ptrdiff_t ps, const float *w, const npd_level *lv,
                                    const float *bias, float *out, ptrdiff_t ostride,
                                    int accumulate, int rectify)
{
    switch (P * 8 + V) {
        NPD_CASES_12(1)
        NPD_CASES_12(2)
        NPD_CASES_8(3)
        NPD_CASES_6(4)
    }
}

/* the vectors (at most NPD_VMAX) of the chunk of channels from f0, and the last one's mask */
static inline int npd_vectors(ptrdiff_t F, ptrdiff_t f0, __mmask16 *last)
{
    ptrdiff_t left = F - f0, V = left >= 16 * NPD_VMAX ? NPD_VMAX : (left + 15) / 16;
    ptrdiff_t tail = left - 16 * (V - 1);
    *last = (__mmask16)(tail >= 16 ? 0xFFFF : (1u << tail) - 1);
    return (int)V;
}

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

/* y (oh, ow, F) = bias + x (H, W, C) correlated with wt (kh * kw * C, F) (then max(., 0)
 * where rectify: the ReLU after the layer, in the same pass), zero padding
 * pad_top / pad_left >= 0 (bottom and right, >= 0, follow from oh, ow); buf: (oh + kh - 1) *
 * (ow + kw - 1) * C floats, used where there is padding. A tile's P positions are P
 * neighbours in a row, C floats apart. */
static NPD_TARGET void npd_correlate_image(const float *x, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C,
                                           const float *wt, const float *bias, ptrdiff_t F,
                                           ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t pad_top,
                                           ptrdiff_t pad_left, float *y, ptrdiff_t oh,
                                           ptrdiff_t ow, float *buf, int rectify)
{
    ptrdiff_t Hp = oh + kh - 1, Wp = ow + kw - 1;
    const float *xp = npd_padded(x, H, W, C, Hp, Wp, pad_top, pad_left, buf);
    __mmask16 last;
    for (ptrdiff_t f0 = 0; f0 < F; f0 += 16 * NPD_VMAX) {
        int V = npd_vectors(F, f0, &last);
        ptrdiff_t chunks = (ow + npd_pmax[V] - 1) / npd_pmax[V], j0;
        for (ptrdiff_t i = 0; i < oh; i++) {
            /* only the kernel rows a that meet image rows: the padding's rows are zeros
             * (the input gradient's dy is padded by kh - 1 on each side) */
            ptrdiff_t a0 = pad_top - i > 0 ? pad_top - i : 0;
            ptrdiff_t a1 = pad_top + H - i < kh ? pad_top + H - i : kh;
            npd_level lv[3] = {{a1 > a0 ? a1 - a0 : 0, Wp * C, kw * C * F}, {kw, C, C * F},
                               {C, 1, F}};
            for (ptrdiff_t t = 0; t < chunks; t++) {
                int P = (int)npd_chunk(ow, chunks, t, &j0);
                npd_tile_any(P, V, last, xp + ((i + a0) * Wp + j0) * C, C,
                             wt + a0 * kw * C * F + f0, lv, bias + f0,
                             y + (i * ow + j0) * F + f0, F, 0, rectify);
            }
        }
    }
}

/* acc ((kh * kw * C), F) += the weight gradient of one image: x (H, W, C), dy (oh, ow, F);
 * buf: (oh + kh - 1) * (ow + kw - 1) * C floats, used where there is padding. A tile's
 * P rows (b, c) are P consecutive floats of the padded image. */
static NPD_TARGET void npd_weight_gradient_image(const float *x, ptrdiff_t H, ptrdiff_t W,
                                                 ptrdiff_t C, const float *dy, ptrdiff_t oh,
                                                 ptrdiff_t ow, ptrdiff_t F, ptrdiff_t kh,
                                                 ptrdiff_t kw, ptrdiff_t pad_top,
                                                 ptrdiff_t pad_left, float *acc, float *buf)
{
    ptrdiff_t Hp = oh + kh - 1, Wp = ow + kw - 1, Q = kw * C;
    const float *xp = npd_padded(x, H, W, C, Hp, Wp, pad_top, pad_left, buf);
    npd_level lv[3] = {{1, 0, 0}, {oh, Wp * C, ow * F}, {ow, C, F}};
    __mmask16 last;
    for (ptrdiff_t f0 = 0; f0 < F; f0 += 16 * NPD_VMAX) {
        int V = npd_vectors(F, f0, &last);
        ptrdiff_t chunks = (Q + npd_pmax[V] - 1) / npd_pmax[V], q0;
        for (ptrdiff_t a = 0; a < kh; a++)
            for (ptrdiff_t t = 0; t < chunks; t++) {
                int P = (int)npd_chunk(Q, chunks, t, &q0);
                npd_tile_any(P, V, last, xp + a * Wp * C + q0, 1, dy + f0, lv, NULL,
                             acc + (a * Q + q0) * F + f0, F, 1, 0);
            }
    }
}

#else   /* not GNU C on x86-64: the direct kernels are absent, the im2col path runs */

static int npd_direct_supported(void) { return 0; }
static void npd_correlate_image(const float *x, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C,
                                const float *wt, const float *bias, ptrdiff_t F,
                                ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t pad_top,
                                ptrdiff_t pad_left, float *y, ptrdiff_t oh, ptrdiff_t ow,
                                float *buf, int rectify) {}
static void npd_weight_gradient_image(const float *x, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C,
                                      const float *dy, ptrdiff_t oh, ptrdiff_t ow,
                                      ptrdiff_t F, ptrdiff_t kh, ptrdiff_t kw,
                                      ptrdiff_t pad_top, ptrdiff_t pad_left, float *acc,
                                      float *buf) {}
#endif

#endif
