/* Depthwise 3x3 convolution for the Cortex-M DSP extension (written for effai; no third-party code).
 * The generated model.c calls effai_dwconv3x3_dsp with the layer's geometry as literal constants,
 * so each layer gets its own instance with immediate address offsets (C, S, IW ... are constants).
 *
 * The input rows of one or two output rows are copied into `band` (scratch), with in_zp written
 * where the window hangs over the border: every output pixel then reads a full 3x3 window of raw
 * int8 inputs, and the bias (effai_rq_t, in_zp folded in) makes padding and interior the same sum
 * as the portable kernel's. A band is filled before any output it serves is written, and holds
 * rows the one-pixel-at-a-time kernel would read later, so the output may overlap the input as
 * planner.overlap_offset allows (reads only move earlier).
 *
 * Inner step: two output pixels x four channels. An input word holds four channels; SXTB16 splits
 * it into (c0, c2) and (c1, c3), and SMLABB/SMLATT multiply each half by the matching int16 weight
 * of the layer's `w16` (codegen.dw_taps16). The two pixels sit side by side (or, for the last
 * column of an odd width, one above the other), so each input word is loaded once for both
 * (stride 1: 4 columns feed 2 x 3 taps). */
#ifndef EFFAI_DW3X3_H
#define EFFAI_DW3X3_H
#include "effai_nn.h"
#include <arm_acle.h>
#include <string.h>

/* n bytes with LDM/STM, 16 bytes per instruction pair, two pairs per loop step */
static inline void effai_copy(int8_t *dst, const int8_t *src, uint32_t n)
{
    if (((uintptr_t)dst | (uintptr_t)src) & 3u) { /* LDM/STM need word alignment */
        for (uint32_t i = 0; i < n; i++) dst[i] = src[i];
        return;
    }
    for (; n >= 32; n -= 32)
        __asm volatile("ldmia %1!, {r4, r5, r6, r8}\n\tstmia %0!, {r4, r5, r6, r8}\n\t"
                       "ldmia %1!, {r4, r5, r6, r8}\n\tstmia %0!, {r4, r5, r6, r8}"
                       : "+r"(dst), "+r"(src) : : "r4", "r5", "r6", "r8", "memory");
    for (uint32_t i = 0; i < n; i++) dst[i] = src[i];
}

static inline void effai_fill(int8_t *dst, int v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) dst[i] = (int8_t)v;
}

/* The MACs of one group (4 channels, 1 or 2 pixels, 3x3 taps) in one assembly block, so the
 * eight accumulators stay in registers (the compiler's schedule hoists loads and spills them).
 * A column: the input word at r + ky*ROW + j*C (4 channels) split by SXTB16 into (c0, c2) and
 * (c1, c3). A tap: LDRD of its int16 weight pairs (w + 8*t bytes), SMLABB/SMLATT into pixel a's
 * (or b's) accumulators. Pixel b's window starts S columns right of a's, so with stride 1 the
 * four columns of a row feed 2 x 3 taps. */
#define EFFAI_DW_COL(ky, j) "ldr %[x], [%[r], #(" #ky "*%c[row] + " #j "*%c[c])]\n\t" \
    "sxtb16 %[e], %[x]\n\tsxtb16 %[x], %[x], ror #8\n\t"
#define EFFAI_DW_TAP(t, a0, a1, a2, a3) "ldrd %[w0], %[w1], [%[wp], #((" #t ")*8)]\n\t"                  \
    "smlabb %[" a0 "], %[e], %[w0], %[" a0 "]\n\tsmlatt %[" a2 "], %[e], %[w0], %[" a2 "]\n\t"         \
    "smlabb %[" a1 "], %[x], %[w1], %[" a1 "]\n\tsmlatt %[" a3 "], %[x], %[w1], %[" a3 "]\n\t"
#define EFFAI_DW_A(t) EFFAI_DW_TAP(t, "a0", "a1", "a2", "a3")
#define EFFAI_DW_B(t) EFFAI_DW_TAP(t, "b0", "b1", "b2", "b3")
#define EFFAI_DW_ROW1(ky, t) EFFAI_DW_COL(ky, 0) EFFAI_DW_A(t) EFFAI_DW_COL(ky, 1) EFFAI_DW_A(t + 1)      \
    EFFAI_DW_COL(ky, 2) EFFAI_DW_A(t + 2)
#define EFFAI_DW_ROW2_S1(ky, t) EFFAI_DW_COL(ky, 0) EFFAI_DW_A(t) EFFAI_DW_COL(ky, 1) EFFAI_DW_A(t + 1)   \
    EFFAI_DW_B(t) EFFAI_DW_COL(ky, 2) EFFAI_DW_A(t + 2) EFFAI_DW_B(t + 1) EFFAI_DW_COL(ky, 3) EFFAI_DW_B(t + 2)
#define EFFAI_DW_ROW2_S2(ky, t) EFFAI_DW_COL(ky, 0) EFFAI_DW_A(t) EFFAI_DW_COL(ky, 1) EFFAI_DW_A(t + 1)   \
    EFFAI_DW_COL(ky, 2) EFFAI_DW_A(t + 2) EFFAI_DW_B(t) EFFAI_DW_COL(ky, 3) EFFAI_DW_B(t + 1)            \
    EFFAI_DW_COL(ky, 4) EFFAI_DW_B(t + 2)
/* vertical pairs: pixel b's window starts S rows below a's (the last column when OW is odd) */
#define EFFAI_DW_VB(R, t) EFFAI_DW_COL(R, 0) EFFAI_DW_B(t) EFFAI_DW_COL(R, 1) EFFAI_DW_B(t + 1)            \
    EFFAI_DW_COL(R, 2) EFFAI_DW_B(t + 2)
#define EFFAI_DW_VAB(R, ta, tb) EFFAI_DW_COL(R, 0) EFFAI_DW_A(ta) EFFAI_DW_B(tb) EFFAI_DW_COL(R, 1)          \
    EFFAI_DW_A(ta + 1) EFFAI_DW_B(tb + 1) EFFAI_DW_COL(R, 2) EFFAI_DW_A(ta + 2) EFFAI_DW_B(tb + 2)
#define EFFAI_DW_COPY_B "mov %[b0], %[a0]\n\tmov %[b1], %[a1]\n\tmov %[b2], %[a2]\n\tmov %[b3], %[a3]\n\t"
#define EFFAI_DW_IN                                                                                    \
    : [r] "r"(r), [wp] "r"(w), [row] "i"(ROW), [c] "i"(C)                                              \
    : "memory" /* reads the band and w16: earlier stores stay before it */
#define EFFAI_DW_OPERANDS                                                                              \
    : [a0] "+r"(acc[0]), [a1] "+r"(acc[1]), [a2] "+r"(acc[2]), [a3] "+r"(acc[3]), [b0] "=&r"(acc[4]),  \
      [b1] "=&r"(acc[5]), [b2] "=&r"(acc[6]), [b3] "=&r"(acc[7]), [x] "=&r"(x), [e] "=&r"(e),          \
      [w0] "=&r"(w0), [w1] "=&r"(w1) EFFAI_DW_IN
#define EFFAI_DW_OPERANDS1                                                                             \
    : [a0] "+r"(acc[0]), [a1] "+r"(acc[1]), [a2] "+r"(acc[2]), [a3] "+r"(acc[3]), [x] "=&r"(x),        \
      [e] "=&r"(e), [w0] "=&r"(w0), [w1] "=&r"(w1) EFFAI_DW_IN

static inline __attribute__((always_inline)) void effai_dw_macs(const int8_t *r, const int16_t *w, int32_t acc[8],
                                                                const int C, const int S, const int ROW,
                                                                const int TWO)
{
    int32_t x, e, w0, w1;
    if (!TWO)
        __asm(EFFAI_DW_ROW1(0, 0) EFFAI_DW_ROW1(1, 3) EFFAI_DW_ROW1(2, 6) EFFAI_DW_OPERANDS1);
    else if (TWO == 2 && S == 1)
        __asm(EFFAI_DW_COPY_B EFFAI_DW_ROW1(0, 0) EFFAI_DW_VAB(1, 3, 0) EFFAI_DW_VAB(2, 6, 3) EFFAI_DW_VB(3, 6)
              EFFAI_DW_OPERANDS);
    else if (TWO == 2)
        __asm(EFFAI_DW_COPY_B EFFAI_DW_ROW1(0, 0) EFFAI_DW_ROW1(1, 3) EFFAI_DW_VAB(2, 6, 0) EFFAI_DW_VB(3, 3)
              EFFAI_DW_VB(4, 6) EFFAI_DW_OPERANDS);
    else if (S == 1)
        __asm(EFFAI_DW_COPY_B EFFAI_DW_ROW2_S1(0, 0) EFFAI_DW_ROW2_S1(1, 3) EFFAI_DW_ROW2_S1(2, 6) EFFAI_DW_OPERANDS);
    else
        __asm(EFFAI_DW_COPY_B EFFAI_DW_ROW2_S2(0, 0) EFFAI_DW_ROW2_S2(1, 3) EFFAI_DW_ROW2_S2(2, 6) EFFAI_DW_OPERANDS);
}

/* four channels of one pixel (TWO = 0) or of two pixels side by side (TWO = 1) or one above the
 * other (TWO = 2); `r` points at the window's top-left input of the first pixel in the band
 * (channel group already added), the second pixel's outputs are DB bytes after the first's */
static inline __attribute__((always_inline)) void effai_dw_group(const int8_t *r, const int16_t *w,
                                                                 const effai_rq_t *q, int8_t *d0, const int C,
                                                                 const int S, const int ROW, const int TWO,
                                                                 const int DB, const int CLAMP, uint32_t lo4,
                                                                 uint32_t hi4)
{
    int32_t acc[8] = {q[0].bias, q[1].bias, q[2].bias, q[3].bias};
    effai_dw_macs(r, w, acc, C, S, ROW, TWO);
    if (TWO) {
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) effai_rq2k_s8(&acc[k], &acc[k + 4], q, k);
        const uint32_t v = effai_pack4(acc, lo4, hi4, CLAMP), u = effai_pack4(acc + 4, lo4, hi4, CLAMP);
        memcpy(d0, &v, 4);
        memcpy(d0 + DB, &u, 4);
    } else {
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) effai_rq1k_s8(&acc[k], q, k);
        const uint32_t v = effai_pack4(acc, lo4, hi4, CLAMP);
        memcpy(d0, &v, 4);
    }
}

/* channels past the last group of 4, one pixel */
static __attribute__((noinline)) void effai_dw_tail(const effai_dwconv_t *p, const int8_t *r, int8_t *d, int c0, int C, int ROW)
{
    for (int ch = c0; ch < C; ch++) {
        int32_t acc = p->rq[ch].bias;
        for (int t = 0; t < 9; t++) acc += r[(t / 3) * ROW + (t % 3) * C + ch] * p->w[t * C + ch];
        const int32_t v = effai_rq_s8(acc, p->rq + ch);
        d[ch] = (int8_t)(v < p->act_min ? p->act_min : v > p->act_max ? p->act_max : v);
    }
}

/* all channels of one pixel or a pair (TWO as in effai_dw_group; OWC: bytes of an output row) */
static inline __attribute__((always_inline)) void effai_dw_pixels(const effai_dwconv_t *p, const int8_t *r, int8_t *d,
                                                                  const int C, const int S, const int ROW,
                                                                  const int OWC, const int TWO, const int CLAMP,
                                                                  uint32_t lo4, uint32_t hi4)
{
    const int16_t *w = p->w16;
    const effai_rq_t *q = p->rq;
    const int DB = TWO == 2 ? OWC : C;
    int ch = 0;
    for (; ch + 3 < C; ch += 4, w += 36, q += 4)
        effai_dw_group(r + ch, w, q, d + ch, C, S, ROW, TWO, DB, CLAMP, lo4, hi4);
    if (C % 4) {
        effai_dw_tail(p, r, d, ch, C, ROW);
        if (TWO) effai_dw_tail(p, r + (TWO == 2 ? S * ROW : S * C), d + DB, ch, C, ROW);
    }
}

/* one output row from the band rows at r: side-by-side pairs, and the last pixel alone when OW is odd and
 * ODD_ALONE (else the caller pairs it with the pixel below) */
static inline __attribute__((always_inline)) void effai_dw_row(const effai_dwconv_t *p, const int8_t *r, int8_t *d,
                                                               const int C, const int S, const int ROW, const int OW,
                                                               const int ODD_ALONE, const int CLAMP, uint32_t lo4,
                                                               uint32_t hi4)
{
    int ox = 0;
    for (; ox + 1 < OW; ox += 2, d += 2 * C) effai_dw_pixels(p, r + ox * S * C, d, C, S, ROW, OW * C, 1, CLAMP, lo4, hi4);
    if (ox < OW && ODD_ALONE) effai_dw_pixels(p, r + ox * S * C, d, C, S, ROW, OW * C, 0, CLAMP, lo4, hi4);
}

/* band: S + 3 rows (two output rows' windows) or 3 of PL + IW + PR pixels (planner.dw_band_bytes) */
static inline __attribute__((always_inline)) void effai_dwconv3x3_dsp(const effai_dwconv_t *p, const int8_t *in,
                                                                      int8_t *out, int8_t *band, const int C,
                                                                      const int S, const int IH, const int IW,
                                                                      const int OH, const int OW, const int PT,
                                                                      const int PL, const int CLAMP)
{
    if (!p->fast) {
        effai_dwconv_s8(p, in, out);
        return;
    }
    const int PR = (OW - 1) * S + 3 - PL - IW > 0 ? (OW - 1) * S + 3 - PL - IW : 0;
    /* two output rows per band fill when that saves copies (stride 1) or pairs an odd last column */
    const int ROWS2 = OH > 1 && (S == 1 || (OW & 1));
    const int ROW = (PL + IW + PR) * C, NB = ROWS2 ? S + 3 : 3, zp = p->in_zp;
    const int VPAIR = ROWS2 && (OW & 1) && (S + 2) * ROW + 2 * C <= 4095; /* LDR's offset reaches the 2nd window */
    const uint32_t lo4 = effai_bytes4(p->act_min), hi4 = effai_bytes4(p->act_max);
    for (int k = 0; k < NB; k++) { /* the side padding never changes */
        effai_fill(band + k * ROW, zp, PL * C);
        effai_fill(band + k * ROW + (PL + IW) * C, zp, PR * C);
    }
    for (int oy = 0; oy < OH; oy += 1 + ROWS2) {
        const int two = ROWS2 && oy + 1 < OH;
        for (int k = 0; k < (two ? NB : 3); k++) {
            const int iy = oy * S - PT + k;
            int8_t *dst = band + k * ROW + PL * C;
            if (iy < 0 || iy >= IH) effai_fill(dst, zp, IW * C);
            else effai_copy(dst, in + iy * IW * C, IW * C);
        }
        int8_t *d = out + oy * OW * C;
        if (!two) {
            effai_dw_row(p, band, d, C, S, ROW, OW, 1, CLAMP, lo4, hi4);
            continue;
        }
        effai_dw_row(p, band, d, C, S, ROW, OW, !VPAIR, CLAMP, lo4, hi4);
        effai_dw_row(p, band + S * ROW, d + OW * C, C, S, ROW, OW, !VPAIR, CLAMP, lo4, hi4);
        if (VPAIR)
            effai_dw_pixels(p, band + (OW - 1) * S * C, d + (OW - 1) * C, C, S, ROW, OW * C, 2, CLAMP, lo4, hi4);
    }
}
#endif
