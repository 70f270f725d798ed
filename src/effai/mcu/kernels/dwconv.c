/* Depthwise convolution (one filter per channel, depth multiplier 1). Output pixels are written
 * in order and a pixel's outputs are written only after its window is read for those channels
 * (planner.py relies on that to overlap input and output). EFFAI_DSP: four channels per step,
 * SXTAB16/SXTB16 unpack, SMLABB/SMLATT multiply-accumulate; same int32 sums as the portable loop. */
#include "effai_nn.h"
#include <string.h>
#if EFFAI_DSP
#include <arm_acle.h>

static inline int32_t sxtab16_ror8(int32_t acc, int32_t x)
{
    int32_t r;
    __asm("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(acc), "r"(x));
    return r;
}

#define TAP(xp, kp)                                                                   \
    do {                                                                              \
        const int32_t xv = effai_ld32(xp), kv = effai_ld32(kp);                       \
        const int32_t x02 = __sxtab16(off, xv), x13 = sxtab16_ror8(off, xv);          \
        const int32_t k02 = __sxtb16(kv), k13 = effai_sxtb16_ror8(kv);                \
        a0 = __smlabb(k02, x02, a0);                                                  \
        a2 = __smlatt(k02, x02, a2);                                                  \
        a1 = __smlabb(k13, x13, a1);                                                  \
        a3 = __smlatt(k13, x13, a3);                                                  \
    } while (0)

/* channels ch..ch+3 of one output pixel; `row` points at channel ch of the window's first valid tap */
static void four_channels(const effai_dwconv_t *p, const int8_t *row, const int8_t *w, int nky, int nkx, int ch,
                          int32_t off, int8_t *dst)
{
    const int c = p->c, row_step = p->in_w * c, wrow_step = p->k_w * c;
    int32_t a0 = p->bias[ch], a1 = p->bias[ch + 1], a2 = p->bias[ch + 2], a3 = p->bias[ch + 3];
    if (nkx == 3) { /* the 3x3 interior: taps unrolled */
        for (int ky = 0; ky < nky; ky++, row += row_step, w += wrow_step) {
            TAP(row, w);
            TAP(row + c, w + c);
            TAP(row + 2 * c, w + 2 * c);
        }
    } else {
        for (int ky = 0; ky < nky; ky++, row += row_step, w += wrow_step) {
            const int8_t *x = row, *k = w;
            for (int kx = 0; kx < nkx; kx++, x += c, k += c) TAP(x, k);
        }
    }
    const int32_t *mult = p->mult + ch, *shift = p->shift + ch;
    const int32_t zp = p->out_zp, lo = p->act_min, hi = p->act_max;
    const uint32_t r0 = (uint8_t)effai_requant(a0, mult[0], shift[0], zp, lo, hi);
    const uint32_t r1 = (uint8_t)effai_requant(a1, mult[1], shift[1], zp, lo, hi);
    const uint32_t r2 = (uint8_t)effai_requant(a2, mult[2], shift[2], zp, lo, hi);
    const uint32_t r3 = (uint8_t)effai_requant(a3, mult[3], shift[3], zp, lo, hi);
    const uint32_t packed = r0 | r1 << 8 | r2 << 16 | r3 << 24;
    memcpy(dst, &packed, 4);
}
#endif

static void one_channel(const effai_dwconv_t *p, const int8_t *row, const int8_t *w, int nky, int nkx, int ch, int8_t *dst)
{
    const int c = p->c, zp = p->in_zp;
    int32_t acc = p->bias[ch];
    for (int ky = 0; ky < nky; ky++, row += p->in_w * c, w += p->k_w * c)
        for (int kx = 0; kx < nkx; kx++) acc += (row[kx * c] - zp) * w[kx * c];
    *dst = effai_requant(acc, p->mult[ch], p->shift[ch], p->out_zp, p->act_min, p->act_max);
}

void effai_dwconv_s8(const effai_dwconv_t *p, const int8_t *in, int8_t *out)
{
    const int c = p->c;
#if EFFAI_DSP
    const uint32_t o = (uint16_t)(-p->in_zp);
    const int32_t off = (int32_t)(o | (o << 16));
#endif
    for (int oy = 0; oy < p->out_h; oy++) {
        const int iy0 = oy * p->s_h - p->pad_t;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + p->k_h > p->in_h ? p->in_h - iy0 : p->k_h;
        for (int ox = 0; ox < p->out_w; ox++) {
            const int ix0 = ox * p->s_w - p->pad_l;
            const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + p->k_w > p->in_w ? p->in_w - ix0 : p->k_w;
            const int8_t *row = in + ((iy0 + ky0) * p->in_w + ix0 + kx0) * c;
            const int8_t *w = p->w + (ky0 * p->k_w + kx0) * c;
            int8_t *dst = out + (oy * p->out_w + ox) * c;
            int ch = 0;
#if EFFAI_DSP
            for (; ch + 3 < c; ch += 4) four_channels(p, row + ch, w + ch, ky1 - ky0, kx1 - kx0, ch, off, dst + ch);
#endif
            for (; ch < c; ch++) one_channel(p, row + ch, w + ch, ky1 - ky0, kx1 - kx0, ch, dst + ch);
        }
    }
}
