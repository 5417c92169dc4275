/* Max pooling of one channels-last image (the loops of ext/pool.pyx): every loop runs
 * over the channels, contiguous, with selects instead of branches -- the forward's in
 * vectors written out (below), the backward's vectorised by the compiler; GCC builds each
 * function for AVX-512, AVX2 and the baseline and picks one when the module loads
 * (target_clones).
 *
 * forward: out[i, j, c] = the window's maximum, argmax[i, j, c] = its place a * size + b
 *   (ties: the first; a window holding NaN gives NaN at the first NaN's place, as the
 *   reference's np.argmax and PyTorch: a value is taken where it is not at most the
 *   maximum so far -- greater, or NaN -- and that maximum is not NaN);
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

/* The forward's channels VL at a time as GCC / Clang vectors of 16 bytes (4 floats, 2
 * doubles; 32 bytes were slower under AVX2): the maximum and its place in registers over
 * the window, its places by row and column (no division), argmax widened to 64 bits at the
 * store. Written plainly, GCC vectorised none of this loop: 4-5x slower. The channels left
 * over, and all of them where the compiler has no vector extensions, by plain loops. */
#if defined(__GNUC__)
#define NPD_POOL_VECTORS 1
typedef float npd_v_f32 __attribute__((vector_size(16)));
typedef int npd_k_f32;                          /* the lanes of float32's compare masks */
typedef npd_k_f32 npd_vk_f32 __attribute__((vector_size(16)));
typedef long long npd_vl_f32 __attribute__((vector_size(32)));    /* ... widened to argmax */
typedef double npd_v_f64 __attribute__((vector_size(16)));
typedef long long npd_k_f64;
typedef npd_k_f64 npd_vk_f64 __attribute__((vector_size(16)));
typedef long long npd_vl_f64 __attribute__((vector_size(16)));
#else
#define NPD_POOL_VECTORS 0
#endif

#if NPD_POOL_VECTORS
/* channels c0, c0 + VL, ... while a whole vector is left (the same selects as the plain
 * loop, lane by lane: the same maxima and places; k = 0 compares m with itself) */
#define NPD_MAXPOOL_VECTORS(SUFFIX)                                                        \
    for (const ptrdiff_t VL = sizeof(npd_v_##SUFFIX) / sizeof(first[0]); c0 + VL <= C;     \
         c0 += VL) {                                                                       \
        npd_v_##SUFFIX m, v;                                                               \
        npd_vk_##SUFFIX place = {0};                                                       \
        memcpy(&m, first + c0, sizeof m);                                                  \
        for (npd_k_##SUFFIX a = 0, k = 0; a < size; a++)                                   \
            for (npd_k_##SUFFIX b = 0; b < size; b++, k++) {                               \
                memcpy(&v, first + (a * W + b) * C + c0, sizeof v);                        \
                npd_vk_##SUFFIX take = ~(v <= m) & (m == m);                               \
                place = (take & k) | (~take & place);                                      \
                m = (npd_v_##SUFFIX)(((npd_vk_##SUFFIX)v & take) |                         \
                                     ((npd_vk_##SUFFIX)m & ~take));                        \
            }                                                                              \
        memcpy(o + c0, &m, sizeof m);                                                      \
        npd_vl_##SUFFIX wide = __builtin_convertvector(place, npd_vl_##SUFFIX);            \
        memcpy(at + c0, &wide, sizeof wide);                                               \
    }
#else
#define NPD_MAXPOOL_VECTORS(SUFFIX)
#endif

#define NPD_MAXPOOL(SUFFIX, T)                                                             \
NPD_CLONES static void npd_maxpool_forward_##SUFFIX(                                       \
    const T *restrict x, ptrdiff_t W, ptrdiff_t C, ptrdiff_t size, T *restrict out,        \
    long long *restrict argmax, ptrdiff_t oh, ptrdiff_t ow)                                \
{                                                                                          \
    for (ptrdiff_t i = 0; i < oh; i++)                                                     \
        for (ptrdiff_t j = 0; j < ow; j++) {                                               \
            T *restrict o = out + (i * ow + j) * C;                                        \
            long long *restrict at = argmax + (i * ow + j) * C;                            \
            const T *restrict first = x + (i * size * W + j * size) * C;                   \
            ptrdiff_t c0 = 0;                                                              \
            NPD_MAXPOOL_VECTORS(SUFFIX)                                                    \
            for (ptrdiff_t c = c0; c < C; c++) {                                           \
                T m = first[c];                                                            \
                long long place = 0;                                                       \
                for (long long a = 0, k = 0; a < size; a++)                                \
                    for (long long b = 0; b < size; b++, k++) {                            \
                        T v = first[(a * W + b) * C + c];                                  \
                        int take = !(v <= m) && m == m;                                    \
                        place = take ? k : place;                                          \
                        m = take ? v : m;                                                  \
                    }                                                                      \
                o[c] = m;                                                                  \
                at[c] = place;                                                             \
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
