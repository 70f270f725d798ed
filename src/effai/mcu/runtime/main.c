/* Test harness (written for effai): reads N inputs from inputs.bin over semihosting, runs
 * model_run() on each, writes the outputs to outputs.bin and the stack high-water mark to
 * stats.txt, and exits with 0 (or the step that failed). effai_mark() is an empty, never
 * inlined function model_run() calls between layers; the instruction-counting QEMU plugin
 * counts instructions between its calls. */
#include <stdint.h>
#include "model.h"

uint32_t effai_stack_used(void);

static int semihost(int op, void *arg)
{
    register int r0 __asm("r0") = op;
    register void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void effai_exit(int code)
{
    uint32_t block[2] = {0x20026u, (uint32_t)code}; /* ADP_Stopped_ApplicationExit */
    semihost(0x20, block);                          /* SYS_EXIT_EXTENDED */
    for (;;) {}
}

__attribute__((noinline)) void effai_mark(void) { __asm volatile("" ::: "memory"); }

static int sh_open(const char *name, uint32_t mode)
{
    uint32_t n = 0;
    while (name[n]) n++;
    uint32_t a[3] = {(uint32_t)name, mode, n};
    return semihost(0x01, a);
}

static int sh_rw(int op, int fd, const void *buf, uint32_t n)
{
    uint32_t a[3] = {(uint32_t)fd, (uint32_t)buf, n};
    return semihost(op, a); /* bytes not transferred */
}

static int sh_flen(int fd)
{
    uint32_t a[1] = {(uint32_t)fd};
    return semihost(0x0C, a);
}

static char *utoa10(uint32_t v, char *end)
{
    do { *--end = (char)('0' + v % 10); v /= 10; } while (v);
    return end;
}

int main(void)
{
    const int in = sh_open("inputs.bin", 1), out = sh_open("outputs.bin", 5);
    if (in < 0 || out < 0) return 2;
    const int n = sh_flen(in) / EFFAI_IN_BYTES;
    for (int i = 0; i < n; i++) {
        if (sh_rw(0x06, in, effai_input(), EFFAI_IN_BYTES) != 0) return 3;
        model_run();
        if (sh_rw(0x05, out, effai_output(), EFFAI_OUT_BYTES) != 0) return 4;
    }
    char buf[32], *s = utoa10((uint32_t)n, buf + 16);
    buf[16] = ' ';
    char *t = utoa10(effai_stack_used(), buf + 31);
    const int stats = sh_open("stats.txt", 4);
    if (stats < 0) return 5;
    sh_rw(0x05, stats, s, (uint32_t)(buf + 17 - s));
    sh_rw(0x05, stats, t, (uint32_t)(buf + 31 - t));
    return 0;
}
