/* Convolution, pointwise convolution and dense layers for the Cortex-M DSP extension (written for
 * effai; no third-party code). The generated model.c calls effai_conv_dsp with the layer's
 * geometry as literal constants: each layer gets its own instance, its loops over the reduction
 * fully or partly unrolled with immediate offsets.
 *
 * Output-stationary 2 x 2 blocks: two output channels x two output pixels, each input word and
 * weight word loaded once per block and used twice, two 16-bit MACs per SMLAD. DIRECT (1x1, no
 * padding, channels a multiple of 4): the pixels' raw int8 inputs are read in place; SXTB16
 * splits a word into (x0, x2) and (x1, x3) and the weights (natural order) the same way.
 * Otherwise each pixel's window is first copied to int16 (effai_im2col_s16; weights in
 * codegen.dsp_order). Both accumulate what the portable kernel accumulates (the bias in
 * effai_rq_t has the input zero point folded in), so the outputs agree bit for bit. */
#ifndef EFFAI_CONV_DSP_H
#define EFFAI_CONV_DSP_H
#include "effai_nn.h"
#include <arm_acle.h>
#include <string.h>

/* 4 reduction steps of the block: x (int8 raw or int16 columns) of pixels 0 and 1 (XS bytes or
 * values apart), weight rows w and w + K4 */
#define EFFAI_C_STEP_DIRECT(x, w, k)                                                                       \
    do {                                                                                             \
        const int32_t X0 = effai_ld32(x + (k));                                                    \
        const int32_t x0e = __sxtb16(X0), x0o = effai_sxtb16_ror8(X0);                             \
        const int32_t U = effai_ld32(w + (k)), V = effai_ld32(w + K4 + (k));                      \
        const int32_t ue = __sxtb16(U), uo = effai_sxtb16_ror8(U);                                 \
        const int32_t ve = __sxtb16(V), vo = effai_sxtb16_ror8(V);                                 \
        a00 = __smlad(x0e, ue, a00); a00 = __smlad(x0o, uo, a00);                                    \
        a10 = __smlad(x0e, ve, a10); a10 = __smlad(x0o, vo, a10);                                    \
        if (TWO) { /* pixel 1's word only exists when there is a pixel 1 */                          \
            const int32_t X1 = effai_ld32(x + XS + (k));                                           \
            const int32_t x1e = __sxtb16(X1), x1o = effai_sxtb16_ror8(X1);                         \
            a01 = __smlad(x1e, ue, a01); a01 = __smlad(x1o, uo, a01);                                \
            a11 = __smlad(x1e, ve, a11); a11 = __smlad(x1o, vo, a11);                                \
        }                                                                                            \
    } while (0)

#define EFFAI_C_STEP_COLS(c0, c1, w, k)                                                                         \
    do {                                                                                             \
        const int32_t U = effai_ld32(w + (k)), V = effai_ld32(w + K4 + (k));                      \
        const int32_t u01 = __sxtb16(U), u23 = effai_sxtb16_ror8(U);                               \
        const int32_t v01 = __sxtb16(V), v23 = effai_sxtb16_ror8(V);                               \
        const int32_t p01 = effai_ld32(c0 + (k)), p23 = effai_ld32(c0 + (k) + 2);                \
        a00 = __smlad(u01, p01, a00); a00 = __smlad(u23, p23, a00);                                  \
        a10 = __smlad(v01, p01, a10); a10 = __smlad(v23, p23, a10);                                  \
        if (TWO) {                                                                                   \
            const int32_t q01 = effai_ld32(c1 + (k)), q23 = effai_ld32(c1 + (k) + 2);            \
            a01 = __smlad(u01, q01, a01); a01 = __smlad(u23, q23, a01);                              \
            a11 = __smlad(v01, q01, a11); a11 = __smlad(v23, q23, a11);                              \
        }                                                                                            \
    } while (0)

/* all output channels (N even) of one or two (TWO) pixels; x: pixel 0's raw inputs (DIRECT) or
 * c0/c1: their int16 columns; outputs at d and d + N */
static inline __attribute__((always_inline)) void effai_conv_block(const effai_conv_t *p, const int8_t *x,
                                                                   const int16_t *c0, const int16_t *c1, int8_t *d,
                                                                   const int K4, const int N, const int XS,
                                                                   const int DIRECT, const int TWO, const int CLAMP,
                                                                   uint32_t lo4, uint32_t hi4)
{
    const int8_t *w = p->w;
    const effai_rq_t *q = p->rq;
    for (int co = 0; co < N; co += 2, w += 2 * K4, q += 2) {
        int32_t a00 = q[0].bias, a10 = q[1].bias, a01 = a00, a11 = a10;
        if (K4 <= 64) { /* short rows: fully unrolled, immediate offsets */
#pragma GCC unroll 16
            for (int k = 0; k < K4; k += 4) {
                if (DIRECT) EFFAI_C_STEP_DIRECT(x, w, k);
                else EFFAI_C_STEP_COLS(c0, c1, w, k);
            }
        } else {
            const int8_t *wk = w, *xk = x;
            const int16_t *k0 = c0, *k1 = c1;
            for (int k = 0; k < K4; k += 16, wk += 16, xk += 16, k0 += 16, k1 += 16) { /* K4 % 16 == 0 */
#pragma GCC unroll 4
                for (int j = 0; j < 16; j += 4) {
                    if (DIRECT) EFFAI_C_STEP_DIRECT(xk, wk, j);
                    else EFFAI_C_STEP_COLS(k0, k1, wk, j);
                }
            }
        }
        if (TWO) {
            const uint32_t v = effai_rq_block4(q, a00, a10, a01, a11, lo4, hi4, CLAMP);
            const uint16_t h0 = (uint16_t)v, h1 = (uint16_t)(v >> 16);
            memcpy(d + co, &h0, 2);
            memcpy(d + N + co, &h1, 2);
        } else {
            effai_rq1k_s8(&a00, q, 0);
            effai_rq1k_s8(&a10, q, 1);
            uint32_t v = (uint32_t)a00;
            EFFAI_BFI(v, a10, 8);
            if (CLAMP) v = effai_clamp4(v, lo4, hi4);
            const uint16_t h0 = (uint16_t)v;
            memcpy(d + co, &h0, 2);
        }
    }
}

/* DIRECT needs KH = KW = 1, no padding, C % 4 == 0 (K4 = C); N even (planner.conv_dsp_instance) */
static inline __attribute__((always_inline)) void effai_conv_dsp(const effai_conv_t *p, const int8_t *in, int8_t *out,
                                                                 int16_t *cols, const int K4, const int N,
                                                                 const int C, const int S, const int IW,
                                                                 const int OH, const int OW, const int DIRECT,
                                                                 const int CLAMP)
{
    if (!p->fast) {
        effai_conv_s8(p, in, out, cols);
        return;
    }
    const uint32_t lo4 = effai_bytes4(p->act_min), hi4 = effai_bytes4(p->act_max);
    if (DIRECT && S == 1) { /* the pixels are contiguous: one row of OH * OW */
        const int P = OH * OW;
        int i = 0;
        for (; i + 1 < P; i += 2) effai_conv_block(p, in + i * C, 0, 0, out + i * N, K4, N, C, 1, 1, CLAMP, lo4, hi4);
        if (i < P) effai_conv_block(p, in + i * C, 0, 0, out + i * N, K4, N, C, 1, 0, CLAMP, lo4, hi4);
    } else if (DIRECT) {
        for (int oy = 0; oy < OH; oy++) {
            const int8_t *x = in + oy * S * IW * C;
            int8_t *d = out + oy * OW * N;
            int ox = 0;
            for (; ox + 1 < OW; ox += 2) effai_conv_block(p, x + ox * S * C, 0, 0, d + ox * N, K4, N, S * C, 1, 1, CLAMP, lo4, hi4);
            if (ox < OW) effai_conv_block(p, x + ox * S * C, 0, 0, d + ox * N, K4, N, S * C, 1, 0, CLAMP, lo4, hi4);
        }
    } else {
        int16_t *c0 = cols, *c1 = cols + K4;
        const int P = OH * OW;
        for (int i = 0; i < P; i += 2) {
            effai_im2col_s16(p, in, i / OW, i % OW, c0);
            if (i + 1 < P) {
                effai_im2col_s16(p, in, (i + 1) / OW, (i + 1) % OW, c1);
                effai_conv_block(p, 0, c0, c1, out + i * N, K4, N, 0, 0, 1, CLAMP, lo4, hi4);
            } else {
                effai_conv_block(p, 0, c0, 0, out + i * N, K4, N, 0, 0, 0, CLAMP, lo4, hi4);
            }
        }
    }
}
#endif
