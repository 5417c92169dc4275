/* The register tiles of the direct convolution, for one instruction set: included by
 * direct_conv.h once per set, after it has defined what a vector is there (NPD_VEC,
 * NPD_LANES floats, NPD_MASK, the NPD_* operations, NPD_TARGET, NPD_VMAX, NPD_PMAX) and
 * NPD_ISA, the suffix of every name defined here (npd_correlate_image_avx512, ..._avx2).
 * One source of the tile logic for every vector width. */

/* the positions a tile of V vectors takes: P x V accumulators, V weights, one broadcast */
static const int NPD_NAME(npd_pmax)[NPD_VMAX + 1] = NPD_PMAX;

/* the v-th vector's lanes: all, or the mask of the chunk's last vector where it is not
 * full (AVX2's masked loads and stores cost more than plain ones: the stores are
 * microcoded on AMD's cores) */
NPD_INLINE NPD_VEC NPD_NAME(npd_get)(const float *src, int v, int V, NPD_MASK last, int full)
{
    return v >= V ? NPD_ZERO() : v == V - 1 && !full ? NPD_MASKLOAD(last, src) : NPD_LOAD(src);
}

/* dst (=|+=) r, or max(r, 0) where rectify: a ReLU after the layer (NaN stays NaN: max_ps
 * returns its second operand where either is NaN); unmasked where the vector is full (a
 * tile's 12 masked stores cost AVX2 on AMD's cores more than the FMAs of a short tile, such
 * as the weight gradient's over 8 x 8 positions) */
NPD_INLINE void NPD_NAME(npd_put)(float *dst, NPD_MASK m, int full, NPD_VEC r, int accumulate,
                                  int rectify)
{
    if (accumulate)
        r = NPD_ADD(r, full ? NPD_LOAD(dst) : NPD_MASKLOAD(m, dst));
    if (rectify)
        r = NPD_MAX(NPD_ZERO(), r);
    if (full)
        NPD_STOREU(dst, r);
    else
        NPD_MASKSTORE(dst, m, r);
}

/* out[p * ostride + L v + l] (=|+=) bias + sum over the three levels of s[p * ps] *
 * w[L v + l], L = NPD_LANES (then max(., 0) where rectify); full: the last of the V vectors
 * has all L lanes (last: its mask otherwise) */
NPD_INLINE void NPD_NAME(npd_tile)(const int P, const int V, const NPD_MASK last, const int full,
                         const float *s, const ptrdiff_t ps, const float *w,
                         const npd_level *lv, const float *bias, float *out,
                         const ptrdiff_t ostride, const int accumulate, const int rectify)
{
    NPD_VEC zero = NPD_ZERO();
    NPD_VEC b0 = bias ? NPD_NAME(npd_get)(bias, 0, V, last, full) : zero;
    NPD_VEC b1 = bias ? NPD_NAME(npd_get)(bias + NPD_LANES, 1, V, last, full) : zero;
    NPD_VEC b2 = bias ? NPD_NAME(npd_get)(bias + 2 * NPD_LANES, 2, V, last, full) : zero;
    NPD_VEC b3 = bias ? NPD_NAME(npd_get)(bias + 3 * NPD_LANES, 3, V, last, full) : zero;
    NPD_FOR_P(NPD_DECLARE)
    for (ptrdiff_t i1 = 0; i1 < lv[0].n; i1++) {
        for (ptrdiff_t i2 = 0; i2 < lv[1].n; i2++) {
            const float *sp = s + i1 * lv[0].s + i2 * lv[1].s;
            const float *wp = w + i1 * lv[0].w + i2 * lv[1].w;
            for (ptrdiff_t i3 = 0; i3 < lv[2].n; i3++) {
                NPD_VEC w0 = NPD_NAME(npd_get)(wp, 0, V, last, full);
                NPD_VEC w1 = NPD_NAME(npd_get)(wp + NPD_LANES, 1, V, last, full);
                NPD_VEC w2 = NPD_NAME(npd_get)(wp + 2 * NPD_LANES, 2, V, last, full);
                NPD_VEC w3 = NPD_NAME(npd_get)(wp + 3 * NPD_LANES, 3, V, last, full);
                NPD_FOR_P(NPD_FMA)
                sp += lv[2].s;
                wp += lv[2].w;
            }
        }
    }
    NPD_FOR_P(NPD_STORE)
}

static NPD_TARGET void NPD_NAME(npd_tile_any)(int P, int V, NPD_MASK last, int full,
                                    const float *s, ptrdiff_t ps, const float *w,
                                    const npd_level *lv, const float *bias, float *out,
                                    ptrdiff_t ostride,
                                    int accumulate, int rectify)
{
    switch ((P * 8 + V) * 2 + full) {
        NPD_CASES_12(1)
        NPD_CASES_12(2)
        NPD_CASES_8(3)
        NPD_CASES_6(4)
    }
}

/* the vectors (at most NPD_VMAX) of the chunk of channels from f0, the last one's mask, and
 * whether it is full */
NPD_INLINE int NPD_NAME(npd_vectors)(ptrdiff_t F, ptrdiff_t f0, NPD_MASK *last, int *full)
{
    const ptrdiff_t L = NPD_LANES;
    ptrdiff_t left = F - f0, V = left >= L * NPD_VMAX ? NPD_VMAX : (left + L - 1) / L;
    ptrdiff_t tail = left - L * (V - 1);
    *full = tail >= L;
    *last = *full ? NPD_MASK_ALL : NPD_MASK_TAIL((int)tail);
    return (int)V;
}

/* y (oh, ow, F) = bias + x (H, W, C) correlated with wt (kh * kw * C, F) (then max(., 0)
 * where rectify: the ReLU after the layer, in the same pass), zero padding
 * pad_top / pad_left >= 0 (bottom and right, >= 0, follow from oh, ow); buf: (oh + kh - 1) *
 * (ow + kw - 1) * C floats, used where there is padding. A tile's P positions are P
 * neighbours in a row, C floats apart. */
static NPD_TARGET void NPD_NAME(npd_correlate_image)(const float *x, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C,
                                           const float *wt, const float *bias, ptrdiff_t F,
                                           ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t pad_top,
                                           ptrdiff_t pad_left, float *y, ptrdiff_t oh,
                                           ptrdiff_t ow, float *buf, int rectify)
{
    ptrdiff_t Hp = oh + kh - 1, Wp = ow + kw - 1;
    const float *xp = npd_padded(x, H, W, C, Hp, Wp, pad_top, pad_left, buf);
    NPD_MASK last;
    int full;
    for (ptrdiff_t f0 = 0; f0 < F; f0 += NPD_LANES * NPD_VMAX) {
        int V = NPD_NAME(npd_vectors)(F, f0, &last, &full);
        ptrdiff_t chunks = (ow + NPD_NAME(npd_pmax)[V] - 1) / NPD_NAME(npd_pmax)[V], j0;
        for (ptrdiff_t i = 0; i < oh; i++) {
            /* only the kernel rows a that meet image rows: the padding's rows are zeros
             * (the input gradient's dy is padded by kh - 1 on each side) */
            ptrdiff_t a0 = pad_top - i > 0 ? pad_top - i : 0;
            ptrdiff_t a1 = pad_top + H - i < kh ? pad_top + H - i : kh;
            npd_level lv[3] = {{a1 > a0 ? a1 - a0 : 0, Wp * C, kw * C * F}, {kw, C, C * F},
                               {C, 1, F}};
            for (ptrdiff_t t = 0; t < chunks; t++) {
                int P = (int)npd_chunk(ow, chunks, t, &j0);
                NPD_NAME(npd_tile_any)(P, V, last, full, xp + ((i + a0) * Wp + j0) * C, C,
                             wt + a0 * kw * C * F + f0, lv, bias + f0,
                             y + (i * ow + j0) * F + f0, F, 0, rectify);
            }
        }
    }
}

/* acc ((kh * kw * C), F) += the weight gradient of one image: x (H, W, C), dy (oh, ow, F);
 * buf: (oh + kh - 1) * (ow + kw - 1) * C floats, used where there is padding. A tile's
 * P rows (b, c) are P consecutive floats of the padded image. */
static NPD_TARGET void NPD_NAME(npd_weight_gradient_image)(const float *x, ptrdiff_t H, ptrdiff_t W,
                                                 ptrdiff_t C, const float *dy, ptrdiff_t oh,
                                                 ptrdiff_t ow, ptrdiff_t F, ptrdiff_t kh,
                                                 ptrdiff_t kw, ptrdiff_t pad_top,
                                                 ptrdiff_t pad_left, float *acc, float *buf)
{
    ptrdiff_t Hp = oh + kh - 1, Wp = ow + kw - 1, Q = kw * C;
    const float *xp = npd_padded(x, H, W, C, Hp, Wp, pad_top, pad_left, buf);
    npd_level lv[3] = {{1, 0, 0}, {oh, Wp * C, ow * F}, {ow, C, F}};
    NPD_MASK last;
    int full;
    for (ptrdiff_t f0 = 0; f0 < F; f0 += NPD_LANES * NPD_VMAX) {
        int V = NPD_NAME(npd_vectors)(F, f0, &last, &full);
        ptrdiff_t chunks = (Q + NPD_NAME(npd_pmax)[V] - 1) / NPD_NAME(npd_pmax)[V], q0;
        for (ptrdiff_t a = 0; a < kh; a++)
            for (ptrdiff_t t = 0; t < chunks; t++) {
                int P = (int)npd_chunk(Q, chunks, t, &q0);
                NPD_NAME(npd_tile_any)(P, V, last, full, xp + a * Wp * C + q0, 1, dy + f0, lv, NULL,
                             acc + (a * Q + q0) * F + f0, F, 1, 0);
            }
    }
}

