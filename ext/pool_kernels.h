/* Max pooling of one channels-last image (the loops of ext/pool.pyx): every loop runs
 * over the channels, contiguous, with selects instead of branches, so that the compiler
 * vectorises it; GCC builds each function for AVX-512, AVX2 and the baseline and picks
 * one when the module loads (target_clones).
 *
 * forward: out[i, j, c] = the window's maximum, argmax[i, j, c] = its place a * size + b
 *   (ties and NaN: the first value stays unless a later one is greater, as before);
 * backward: dx[i * size + a, j * size + b, c] = dy[i, j, c] where argmax is a * size + b,
 *   else 0, the rows and columns past the last window 0 too.
 */
#ifndef NPD_POOL_KERNELS_H
#define NPD_POOL_KERNELS_H

#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(NPD_NO_X86_KERNELS)
#define NPD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NPD_CLONES
#endif

#define NPD_LANES 16                    /* channels kept in registers at a time */

#define NPD_MAXPOOL(SUFFIX, T)                                                              \
NPD_CLONES static void npd_maxpool_forward_##SUFFIX(                                       \
    const T *restrict x, ptrdiff_t W, ptrdiff_t C, ptrdiff_t size, T *restrict out,        \
    long long *restrict argmax, ptrdiff_t oh, ptrdiff_t ow)                                \
{                                                                                          \
    for (ptrdiff_t i = 0; i < oh; i++)                                                     \
        for (ptrdiff_t j = 0; j < ow; j++) {                                               \
            T *restrict o = out + (i * ow + j) * C;                                        \
            long long *restrict at = argmax + (i * ow + j) * C;                            \
            const T *restrict first = x + (i * size * W + j * size) * C;                   \
            for (ptrdiff_t c0 = 0; c0 < C; c0 += NPD_LANES) {                              \
                ptrdiff_t lanes = C - c0 < NPD_LANES ? C - c0 : NPD_LANES;                 \
                T m[NPD_LANES];                                                            \
                long long place[NPD_LANES];                                                \
                for (ptrdiff_t c = 0; c < lanes; c++) {                                    \
                    m[c] = first[c0 + c];                                                  \
                    place[c] = 0;                                                          \
                }                                                                          \
                for (long long k = 1; k < size * size; k++) {                              \
                    const T *restrict s =                                                  \
                        x + ((i * size + k / size) * W + j * size + k % size) * C + c0;    \
                    for (ptrdiff_t c = 0; c < lanes; c++) {                                \
                        T v = s[c];                                                        \
                        place[c] = v > m[c] ? k : place[c];                                \
                        m[c] = v > m[c] ? v : m[c];                                        \
                    }                                                                      \
                }                                                                          \
                for (ptrdiff_t c = 0; c < lanes; c++) {                                    \
                    o[c0 + c] = m[c];                                                      \
                    at[c0 + c] = place[c];                                                 \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
}                                                                                          \
                                                                                           \
NPD_CLONES static void npd_maxpool_backward_##SUFFIX(                                      \
    const T *restrict dy, const long long *restrict argmax, ptrdiff_t size, T *restrict dx, \
    ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t oh, ptrdiff_t ow)                     \
{                                                                                          \
    for (ptrdiff_t i = 0; i < oh; i++) {                                                   \
        for (ptrdiff_t a = 0; a < size; a++) {                                             \
            T *restrict row = dx + ((i * size + a) * W) * C;                               \
            for (ptrdiff_t j = 0; j < ow; j++)                                             \
                for (ptrdiff_t b = 0; b < size; b++) {                                     \
                    const T *restrict g = dy + (i * ow + j) * C;                           \
                    const long long *restrict at = argmax + (i * ow + j) * C;              \
                    T *restrict d = row + (j * size + b) * C;                              \
                    long long k = a * size + b;                                            \
                    for (ptrdiff_t c = 0; c < C; c++)                                      \
                        d[c] = at[c] == k ? g[c] : (T)0;                                   \
                }                                                                          \
            memset(row + ow * size * C, 0, (size_t)((W - ow * size) * C) * sizeof(T));     \
        }                                                                                  \
    }                                                                                      \
    memset(dx + oh * size * W * C, 0, (size_t)((H - oh * size) * W * C) * sizeof(T));      \
}

NPD_MAXPOOL(f32, float)
NPD_MAXPOOL(f64, double)

#endif
