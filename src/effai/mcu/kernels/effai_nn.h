/* effai's int8 kernels for microcontrollers (written for effai; no third-party code).
 * Tensors are int8 NHWC without the batch axis; real = scale * (q - zp).
 * Requantization: t = (acc * mult + 2^31) >> 32 (SMMULR), out = zp + ((t + (2^shift >> 1)) >> shift),
 * clamped to [act_min, act_max]; mult < 2^31, shift in [0, 31]; a negative shift (multiplier >= 0.5)
 * shifts the clamped accumulator left instead (see effai/mcu/ir.py). */
#ifndef EFFAI_NN_H
#define EFFAI_NN_H
#include <stdint.h>
#include <string.h>

/* Per output channel, for the DSP and Helium builds (effai/mcu/codegen.py: requant_table): the
 * bias with the input zero point folded in (bias - in_zp * sum(w), so kernels multiply raw int8
 * inputs), and the requantization with the output zero point folded into the rounding term:
 * out = ((SMMULR(acc, mult) + add) >> shift), add = 2^shift / 2 + out_zp * 2^shift. Exact when
 * 0 <= shift <= 22 (|SMMULR| < 2^30, so nothing overflows); a layer with another shift has
 * fast = 0 and its kernels use effai_requant with mult/shift of the layer instead. */
typedef struct {
    int32_t bias, mult, add, shift;
} effai_rq_t;

typedef struct {
    const int8_t *w;      /* (out_c, k4), rows padded to 4 (8 for Helium); the DSP build stores each group of 4 as
                           * k0 k2 k1 k3, except for layers effai_conv_dsp reads in place (natural order) */
    const int32_t *bias, *mult, *shift;
    const effai_rq_t *rq; /* DSP and Helium builds */
    uint16_t in_h, in_w, in_c, out_h, out_w, out_c, k4;
    uint8_t k_h, k_w, s_h, s_w, pad_t, pad_l;
    int16_t in_zp, out_zp, act_min, act_max;
    uint8_t fast;         /* rq's add/shift are exact for every channel (see effai_rq_t) */
} effai_conv_t;

typedef struct {
    const int8_t *w;      /* (k_h * k_w, c) */
    const int32_t *bias, *mult, *shift;
    const effai_rq_t *rq; /* DSP build */
    const int16_t *w16;   /* DSP build, 3x3: per group of 4 channels, per tap: (k_c0, k_c2), (k_c1, k_c3) as int16 pairs */
    uint16_t in_h, in_w, c, out_h, out_w;
    uint8_t k_h, k_w, s_h, s_w, pad_t, pad_l;
    int16_t in_zp, out_zp, act_min, act_max;
    uint8_t fast;         /* rq's add/shift are exact for every channel (see effai_rq_t) */
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
/* one output pixel's window as int16 (x - in_zp and padding 0, or in the DSP builds raw x and
 * padding in_zp), zero-padded to k4 */
void effai_im2col_s16(const effai_conv_t *p, const int8_t *in, int oy, int ox, int16_t *col);
void effai_dwconv_s8(const effai_dwconv_t *p, const int8_t *in, int8_t *out);
void effai_add_s8(const effai_add_t *p, const int8_t *a, const int8_t *b, int8_t *out);
void effai_avgpool_s8(const effai_pool_t *p, const int8_t *in, int8_t *out);
void effai_maxpool_s8(const effai_pool_t *p, const int8_t *in, int8_t *out);
void effai_relu_s8(const effai_relu_t *p, const int8_t *in, int8_t *out);

/* a 32-bit word from any address (one LDR: the Cortex-M3/M4/M7/M55 load words unaligned) */
static inline int32_t effai_ld32(const void *src)
{
    int32_t v;
    memcpy(&v, src, 4);
    return v;
}

#if EFFAI_DSP
static inline int32_t effai_sxtb16_ror8(int32_t x) /* bytes 1 and 3 sign-extended: one SXTB16 with ROR #8 */
{
    int32_t r;
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#endif

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

#if EFFAI_DSP
/* The fast requantization of effai_rq_t in place, saturated to int8 (the activation clamp comes
 * after), for channel k of the group at q (k a constant: an immediate offset): SMMLAR gives
 * add + SMMULR(acc, mult) in one instruction. */
static inline __attribute__((always_inline)) void effai_rq1k_s8(int32_t *a, const effai_rq_t *q, const int k)
{
    int32_t m, ad, sh;
    __asm("ldrd %[m], %[ad], [%[q], #(%c[o] + 4)]\n\tldr %[sh], [%[q], #(%c[o] + 12)]\n\t"
          "smmlar %[a], %[a], %[m], %[ad]\n\tasr %[a], %[a], %[sh]\n\tssat %[a], #8, %[a]"
          : [a] "+r"(*a), [m] "=&r"(m), [ad] "=&r"(ad), [sh] "=&r"(sh) : [q] "r"(q), [o] "i"(16 * k), "m"(q[k]));
}

static inline int32_t effai_rq_s8(int32_t acc, const effai_rq_t *q)
{
    effai_rq1k_s8(&acc, q, 0);
    return acc;
}

/* effai_rq1k_s8 for one channel of two pixels, the channel's constants loaded once */
static inline __attribute__((always_inline)) void effai_rq2k_s8(int32_t *a, int32_t *b, const effai_rq_t *q, const int k)
{
    int32_t m, ad, sh;
    __asm("ldrd %[m], %[ad], [%[q], #(%c[o] + 4)]\n\tldr %[sh], [%[q], #(%c[o] + 12)]\n\t"
          "smmlar %[a], %[a], %[m], %[ad]\n\tsmmlar %[b], %[b], %[m], %[ad]\n\t"
          "asr %[a], %[a], %[sh]\n\tasr %[b], %[b], %[sh]\n\tssat %[a], #8, %[a]\n\tssat %[b], #8, %[b]"
          : [a] "+r"(*a), [b] "+r"(*b), [m] "=&r"(m), [ad] "=&r"(ad), [sh] "=&r"(sh)
          : [q] "r"(q), [o] "i"(16 * k), "m"(q[k]));
}

/* bits [lsb, lsb + 8) of `word` := the low byte of v (one BFI) */
#define EFFAI_BFI(word, v, lsb) __asm("bfi %0, %1, #" #lsb ", #8" : "+r"(word) : "r"(v))

/* Clamp the four int8 lanes of `v` to [lo, hi] (lo4/hi4: lo, hi in every byte): SSUB8 sets a GE
 * flag per byte, SEL picks per byte; four instructions for four outputs. */
static inline uint32_t effai_clamp4(uint32_t v, uint32_t lo4, uint32_t hi4)
{
    uint32_t t;
    __asm("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(t) : "r"(v), "r"(lo4) : "cc");
    __asm("ssub8 %0, %1, %2\n\tsel %0, %2, %1" : "=&r"(v) : "r"(t), "r"(hi4) : "cc");
    return v;
}

static inline uint32_t effai_bytes4(int32_t v) { return (uint8_t)v * 0x01010101u; }

/* four int8-saturated outputs packed into a word (the BFIs overwrite r[0]'s sign bits) and
 * clamped to the activation range unless that is all of int8 (CLAMP = 0: SSAT did it) */
static inline __attribute__((always_inline)) uint32_t effai_pack4(const int32_t *r, uint32_t lo4, uint32_t hi4,
                                                                  const int CLAMP)
{
    uint32_t v = (uint32_t)r[0];
    EFFAI_BFI(v, r[1], 8);
    EFFAI_BFI(v, r[2], 16);
    EFFAI_BFI(v, r[3], 24);
    return CLAMP ? effai_clamp4(v, lo4, hi4) : v;
}

/* a 2 x 2 block (channels co, co+1 of pixels 0 and 1; q at channel co) requantized and packed
 * as (p0c0, p0c1, p1c0, p1c1) */
static inline __attribute__((always_inline)) uint32_t effai_rq_block4(const effai_rq_t *q, int32_t a00, int32_t a10,
                                                                      int32_t a01, int32_t a11, uint32_t lo4,
                                                                      uint32_t hi4, const int CLAMP)
{
    int32_t r[4];
    effai_rq2k_s8(&a00, &a01, q, 0);
    effai_rq2k_s8(&a10, &a11, q, 1);
    r[0] = a00, r[1] = a10, r[2] = a01, r[3] = a11;
    return effai_pack4(r, lo4, hi4, CLAMP);
}
#endif
#endif
