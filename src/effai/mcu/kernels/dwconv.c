/* Depthwise convolution (one filter per channel, depth multiplier 1), portable C. Output pixels
 * are written in order and each pixel's window is read before it is written (planner.py relies
 * on that to overlap input and output). */
#include "effai_nn.h"

void effai_dwconv_s8(const effai_dwconv_t *p, const int8_t *in, int8_t *out)
{
    const int c = p->c, zp = p->in_zp;
    for (int oy = 0; oy < p->out_h; oy++) {
        const int iy0 = oy * p->s_h - p->pad_t;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + p->k_h > p->in_h ? p->in_h - iy0 : p->k_h;
        for (int ox = 0; ox < p->out_w; ox++) {
            const int ix0 = ox * p->s_w - p->pad_l;
            const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + p->k_w > p->in_w ? p->in_w - ix0 : p->k_w;
            int8_t *dst = out + (oy * p->out_w + ox) * c;
            for (int ch = 0; ch < c; ch++) {
                int32_t acc = p->bias[ch];
                for (int ky = ky0; ky < ky1; ky++) {
                    const int8_t *row = in + ((iy0 + ky) * p->in_w + ix0) * c + ch;
                    const int8_t *w = p->w + ky * p->k_w * c + ch;
                    for (int kx = kx0; kx < kx1; kx++) acc += (row[kx * c] - zp) * w[kx * c];
                }
                dst[ch] = effai_requant(acc, p->mult[ch], p->shift[ch], p->out_zp, p->act_min, p->act_max);
            }
        }
    }
}
