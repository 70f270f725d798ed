/* Convolution as im2col + matrix multiply, two output pixels per step: both pixels' windows are
 * copied (as int16) before either is written, which lets the memory planner overlap the output
 * with the input (see planner.py). The portable build copies x - in_zp (padding 0) and adds the
 * layer's bias; the DSP and Helium builds copy raw x (padding in_zp) and start from rq's bias,
 * which has -in_zp * sum(w) folded in: the same int32 sums, so all builds agree bit for bit.
 * EFFAI_DSP selects the SMLAD matrix multiply (two 16-bit MACs per instruction, 2 channels x 2
 * pixels per step) and the fast requantization of effai_rq_t. */
#include "effai_nn.h"
#include <string.h>
#if EFFAI_DSP
#include <arm_acle.h>
#endif
#if EFFAI_MVE
#include <arm_mve.h>
#endif

static inline int8_t finish(const effai_conv_t *p, int co, int32_t acc)
{
    return effai_requant(acc, p->mult[co], p->shift[co], p->out_zp, p->act_min, p->act_max);
}

static inline void store32(void *dst, int32_t v) { memcpy(dst, &v, 4); }

#if EFFAI_DSP
static inline int32_t pkhbt16(int32_t lo, int32_t hi) /* (lo.lo, hi.lo) */
{
    int32_t r;
    __asm("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
}

static inline int32_t pkhtb16(int32_t hi, int32_t lo) /* (lo.hi, hi.hi) */
{
    int32_t r;
    __asm("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(hi), "r"(lo));
    return r;
}

#endif

#if EFFAI_DSP
#define IN_OFFSET(p) 0           /* raw inputs; the bias carries the zero point */
#define PAD_VALUE(p) ((p)->in_zp)
#else
#define IN_OFFSET(p) ((p)->in_zp)
#define PAD_VALUE(p) 0
#endif

/* dst[i] = src[i] - zp as int16; the DSP path (zp = 0) widens 4 bytes with 2 SXTB16 + 2 PKH */
static void q7_to_q15(const int8_t *src, int16_t *dst, int n, int zp)
{
#if EFFAI_DSP
    for (; n >= 4; n -= 4, src += 4, dst += 4) {
        const int32_t w = effai_ld32(src);
        const int32_t a = __sxtb16(w), b = effai_sxtb16_ror8(w); /* (x0,x2) (x1,x3) */
        store32(dst, pkhbt16(a, b));
        store32(dst + 2, pkhtb16(b, a));
    }
#endif
    for (; n > 0; n--) *dst++ = (int16_t)(*src++ - zp);
}

static inline void fill16(int16_t *dst, int n, int v)
{
    for (int i = 0; i < n; i++) dst[i] = (int16_t)v;
}

void effai_im2col_s16(const effai_conv_t *p, const int8_t *in, int oy, int ox, int16_t *col)
{
    const int c = p->in_c, zp = IN_OFFSET(p), fill = PAD_VALUE(p), kw = p->k_w;
    const int iy0 = oy * p->s_h - p->pad_t, ix0 = ox * p->s_w - p->pad_l;
    const int inside = ix0 >= 0 && ix0 + kw <= p->in_w;
    int16_t *dst = col;
    for (int ky = 0; ky < p->k_h; ky++) {
        const int iy = iy0 + ky;
        if (iy < 0 || iy >= p->in_h) {
            fill16(dst, kw * c, fill);
            dst += kw * c;
        } else if (inside) { /* the row's kw taps are contiguous in NHWC */
            q7_to_q15(in + (iy * p->in_w + ix0) * c, dst, kw * c, zp);
            dst += kw * c;
        } else {
            for (int kx = 0; kx < kw; kx++, dst += c) {
                const int ix = ix0 + kx;
                if (ix < 0 || ix >= p->in_w) {
                    fill16(dst, c, fill);
                } else {
                    q7_to_q15(in + (iy * p->in_w + ix) * c, dst, c, zp);
                }
            }
        }
    }
    while (dst < col + p->k4) *dst++ = 0;
}

#if EFFAI_MVE
/* Helium: 8 int8 weights widened to int16 lanes (VLDRB.S16), multiplied with 8 int16 columns and
 * summed into the accumulator (VMLADAVA.S16); rows are padded to multiples of 8. */
static void matmul(const effai_conv_t *p, const int16_t *x0, const int16_t *x1, int8_t *out0, int8_t *out1)
{
    const int k8 = p->k4, n = p->out_c;
    int co = 0;
    for (; co + 1 < n; co += 2) {
        const int8_t *w0 = p->w + co * k8, *w1 = w0 + k8;
        int32_t a00 = p->rq[co].bias, a10 = p->rq[co + 1].bias, a01 = a00, a11 = a10;
        if (x1) {
            for (int k = 0; k < k8; k += 8) {
                const int16x8_t u = vldrbq_s16(w0 + k), v = vldrbq_s16(w1 + k);
                const int16x8_t c0 = vld1q_s16(x0 + k), c1 = vld1q_s16(x1 + k);
                a00 = vmladavaq_s16(a00, u, c0);
                a10 = vmladavaq_s16(a10, v, c0);
                a01 = vmladavaq_s16(a01, u, c1);
                a11 = vmladavaq_s16(a11, v, c1);
            }
            out1[co] = finish(p, co, a01);
            out1[co + 1] = finish(p, co + 1, a11);
        } else {
            for (int k = 0; k < k8; k += 8) {
                const int16x8_t c0 = vld1q_s16(x0 + k);
                a00 = vmladavaq_s16(a00, vldrbq_s16(w0 + k), c0);
                a10 = vmladavaq_s16(a10, vldrbq_s16(w1 + k), c0);
            }
        }
        out0[co] = finish(p, co, a00);
        out0[co + 1] = finish(p, co + 1, a10);
    }
    if (co < n) {
        const int8_t *w0 = p->w + co * k8;
        int32_t a0 = p->rq[co].bias, a1 = a0;
        for (int k = 0; k < k8; k += 8) {
            const int16x8_t u = vldrbq_s16(w0 + k);
            a0 = vmladavaq_s16(a0, u, vld1q_s16(x0 + k));
            if (x1) a1 = vmladavaq_s16(a1, u, vld1q_s16(x1 + k));
        }
        if (x1) out1[co] = finish(p, co, a1);
        out0[co] = finish(p, co, a0);
    }
}
#elif EFFAI_DSP

/* one output channel, one column: the tail of the 2x2 blocking */
static inline int32_t dot1(const int8_t *w, const int16_t *x, int k4, int32_t acc)
{
    for (int k = 0; k < k4; k += 4) {
        const int32_t a = effai_ld32(w + k);
        acc = __smlad(__sxtb16(a), effai_ld32(x + k), acc);
        acc = __smlad(effai_sxtb16_ror8(a), effai_ld32(x + k + 2), acc);
    }
    return acc;
}

static inline void store16(int8_t *dst, uint32_t v)
{
    const uint16_t h = (uint16_t)v;
    memcpy(dst, &h, 2);
}

/* `fast` is a constant in each of the two instances (see matmul) */
static inline __attribute__((always_inline)) void matmul_body(const effai_conv_t *p, const int16_t *x0,
                                                               const int16_t *x1, int8_t *out0, int8_t *out1,
                                                               const int fast)
{
    const int k4 = p->k4, n = p->out_c;
    const uint32_t lo4 = effai_bytes4(p->act_min), hi4 = effai_bytes4(p->act_max);
    const effai_rq_t *q = p->rq;
    const int8_t *w0 = p->w;
    int co = 0;
    for (; co + 1 < n; co += 2, q += 2, w0 += 2 * k4) {
        const int8_t *w1 = w0 + k4;
        int32_t a00 = q[0].bias, a10 = q[1].bias;
        if (x1) {
            int32_t a01 = a00, a11 = a10;
            for (int k = 0; k < k4; k += 4) {
                const int32_t u = effai_ld32(w0 + k), v = effai_ld32(w1 + k);
                const int32_t u01 = __sxtb16(u), u23 = effai_sxtb16_ror8(u);
                const int32_t v01 = __sxtb16(v), v23 = effai_sxtb16_ror8(v);
                const int32_t p01 = effai_ld32(x0 + k), p23 = effai_ld32(x0 + k + 2);
                const int32_t q01 = effai_ld32(x1 + k), q23 = effai_ld32(x1 + k + 2);
                a00 = __smlad(u01, p01, a00); a00 = __smlad(u23, p23, a00);
                a10 = __smlad(v01, p01, a10); a10 = __smlad(v23, p23, a10);
                a01 = __smlad(u01, q01, a01); a01 = __smlad(u23, q23, a01);
                a11 = __smlad(v01, q01, a11); a11 = __smlad(v23, q23, a11);
            }
            if (fast) {
                const uint32_t r = effai_rq_block4(q, a00, a10, a01, a11, lo4, hi4, 1);
                store16(out0 + co, r);
                store16(out1 + co, r >> 16);
                continue;
            }
            out1[co] = finish(p, co, a01);
            out1[co + 1] = finish(p, co + 1, a11);
        } else {
            a00 = dot1(w0, x0, k4, a00);
            a10 = dot1(w1, x0, k4, a10);
        }
        out0[co] = finish(p, co, a00);
        out0[co + 1] = finish(p, co + 1, a10);
    }
    if (co < n) {
        if (x1) out1[co] = finish(p, co, dot1(w0, x1, k4, q->bias));
        out0[co] = finish(p, co, dot1(w0, x0, k4, q->bias));
    }
}

static void matmul(const effai_conv_t *p, const int16_t *x0, const int16_t *x1, int8_t *out0, int8_t *out1)
{
    if (p->fast) matmul_body(p, x0, x1, out0, out1, 1);
    else matmul_body(p, x0, x1, out0, out1, 0);
}
#else
static void matmul(const effai_conv_t *p, const int16_t *x0, const int16_t *x1, int8_t *out0, int8_t *out1)
{
    const int k4 = p->k4;
    for (int co = 0; co < p->out_c; co++) {
        const int8_t *w = p->w + co * k4;
        int32_t a0 = p->bias[co], a1 = p->bias[co];
        for (int k = 0; k < k4; k++) a0 += (int32_t)w[k] * x0[k];
        out0[co] = finish(p, co, a0);
        if (x1) {
            for (int k = 0; k < k4; k++) a1 += (int32_t)w[k] * x1[k];
            out1[co] = finish(p, co, a1);
        }
    }
}
#endif

void effai_conv_s8(const effai_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch)
{
    const int pixels = p->out_h * p->out_w, n = p->out_c;
    int16_t *x0 = scratch, *x1 = scratch + p->k4;
    for (int i = 0; i < pixels; i += 2) {
        const int two = i + 1 < pixels;
        effai_im2col_s16(p, in, i / p->out_w, i % p->out_w, x0);
        if (two) effai_im2col_s16(p, in, (i + 1) / p->out_w, (i + 1) % p->out_w, x1);
        matmul(p, x0, two ? x1 : 0, out + i * n, out + (i + 1) * n);
    }
}
