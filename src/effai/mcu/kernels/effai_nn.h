/* effai's int8 kernels for microcontrollers (written for effai; no third-party code).
 * Tensors are int8 NHWC without the batch axis; real = scale * (q - zp).
 * Requantization: t = (acc * mult + 2^31) >> 32 (SMMULR), out = zp + ((t + (2^shift >> 1)) >> shift),
 * clamped to [act_min, act_max]; mult < 2^31, shift in [0, 31]; a negative shift (multiplier >= 0.5)
 * shifts the clamped accumulator left instead (see effai/mcu/ir.py). */
#ifndef EFFAI_NN_H
#define EFFAI_NN_H
#include <stdint.h>

typedef struct {
    const int8_t *w;      /* (out_c, k4), rows padded to 4 (8 for Helium); the DSP build stores each group of 4 as k0 k2 k1 k3 */
    const int32_t *bias, *mult, *shift;
    uint16_t in_h, in_w, in_c, out_h, out_w, out_c, k4;
    uint8_t k_h, k_w, s_h, s_w, pad_t, pad_l;
    int16_t in_zp, out_zp, act_min, act_max;
} effai_conv_t;

typedef struct {
    const int8_t *w;      /* (k_h * k_w, c) */
    const int32_t *bias, *mult, *shift;
    uint16_t in_h, in_w, c, out_h, out_w;
    uint8_t k_h, k_w, s_h, s_w, pad_t, pad_l;
    int16_t in_zp, out_zp, act_min, act_max;
} effai_dwconv_t;

typedef struct {
    uint32_t size;
    int32_t mult_a, mult_b, shift;
    int16_t zp_a, zp_b, out_zp, act_min, act_max;
} effai_add_t;

typedef struct {
    uint16_t in_h, in_w, c, out_h, out_w;
    uint8_t k_h, k_w, s_h, s_w, pad_t, pad_l;
    int16_t in_zp, out_zp, act_min, act_max;
    int32_t mult, shift;
} effai_pool_t;

typedef struct {
    uint32_t size;
    int16_t act_min, act_max;
} effai_relu_t;

/* conv, pointwise conv and fully connected (a 1x1 conv on a 1x1 image); scratch: 2 * k4 int16 */
void effai_conv_s8(const effai_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch);
void effai_dwconv_s8(const effai_dwconv_t *p, const int8_t *in, int8_t *out);
void effai_add_s8(const effai_add_t *p, const int8_t *a, const int8_t *b, int8_t *out);
void effai_avgpool_s8(const effai_pool_t *p, const int8_t *in, int8_t *out);
void effai_maxpool_s8(const effai_pool_t *p, const int8_t *in, int8_t *out);
void effai_relu_s8(const effai_relu_t *p, const int8_t *in, int8_t *out);

static inline int32_t effai_mulhi_round(int32_t a, int32_t b)
{
#if EFFAI_DSP
    int32_t r;
    __asm("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((int64_t)a * b + 0x80000000LL) >> 32);
#endif
}

static inline int8_t effai_requant(int32_t acc, int32_t mult, int32_t shift, int32_t zp, int32_t lo, int32_t hi)
{
    if (shift < 0) {
        const int32_t lim = (int32_t)1 << (30 + shift);
        acc = (acc > lim ? lim : acc < -lim ? -lim : acc) * ((int32_t)1 << -shift);
        shift = 0;
    }
    const int32_t t = effai_mulhi_round(acc, mult); /* |t| < 2^30: no overflow below */
    const int32_t v = ((t + ((1 << shift) >> 1)) >> shift) + zp;
    return (int8_t)(v < lo ? lo : v > hi ? hi : v);
}
#endif
