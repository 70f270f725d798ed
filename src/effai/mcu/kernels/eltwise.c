/* Elementwise add and ReLU (in place when the planner gives out == a), pooling. */
#include "effai_nn.h"

void effai_add_s8(const effai_add_t *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    /* multipliers are below 2^22 (lower.add_multipliers), so the sum fits int32; the fields are
     * copied to locals because the int8 stores could alias *p */
    const int32_t shift = p->shift, round = (int32_t)1 << (shift - 1), ma = p->mult_a, mb = p->mult_b;
    const int32_t za = p->zp_a, zb = p->zp_b, zo = p->out_zp, lo = p->act_min, hi = p->act_max;
    const uint32_t n = p->size;
    for (uint32_t i = 0; i < n; i++) {
        const int32_t acc = (a[i] - za) * ma + (b[i] - zb) * mb;
        const int32_t v = ((acc + round) >> shift) + zo;
        out[i] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
    }
}

void effai_relu_s8(const effai_relu_t *p, const int8_t *in, int8_t *out)
{
    const int lo = p->act_min, hi = p->act_max;
    const uint32_t n = p->size;
    for (uint32_t i = 0; i < n; i++) {
        const int v = in[i];
        out[i] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
    }
}

/* Average pooling without padding; global pooling is a window the size of the input. */
void effai_avgpool_s8(const effai_pool_t *p, const int8_t *in, int8_t *out)
{
    const int c = p->c, count = p->k_h * p->k_w;
    for (int oy = 0; oy < p->out_h; oy++)
        for (int ox = 0; ox < p->out_w; ox++)
            for (int ch = 0; ch < c; ch++) {
                int32_t acc = -count * p->in_zp;
                for (int ky = 0; ky < p->k_h; ky++)
                    for (int kx = 0; kx < p->k_w; kx++)
                        acc += in[((oy * p->s_h + ky) * p->in_w + ox * p->s_w + kx) * c + ch];
                out[(oy * p->out_w + ox) * c + ch] = effai_requant(acc, p->mult, p->shift, p->out_zp, p->act_min, p->act_max);
            }
}

void effai_maxpool_s8(const effai_pool_t *p, const int8_t *in, int8_t *out)
{
    const int c = p->c;
    for (int oy = 0; oy < p->out_h; oy++)
        for (int ox = 0; ox < p->out_w; ox++)
            for (int ch = 0; ch < c; ch++) {
                int m = -128;
                for (int ky = 0; ky < p->k_h; ky++) {
                    const int iy = oy * p->s_h - p->pad_t + ky;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (int kx = 0; kx < p->k_w; kx++) {
                        const int ix = ox * p->s_w - p->pad_l + kx;
                        if (ix < 0 || ix >= p->in_w) continue;
                        const int v = in[(iy * p->in_w + ix) * c + ch];
                        m = v > m ? v : m;
                    }
                }
                out[(oy * p->out_w + ox) * c + ch] = (int8_t)(m < p->act_min ? p->act_min : m > p->act_max ? p->act_max : m);
            }
}
