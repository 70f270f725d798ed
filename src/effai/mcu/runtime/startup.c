/* Reset handler and vector table for Cortex-M (written for effai): copy .data from flash, zero
 * .bss, paint the stack (main measures its high-water mark), enable the FPU/MVE coprocessor
 * access, call main. Faults end the emulation with exit code 99 via semihosting. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
int main(void);
void effai_exit(int code);

#define STACK_PAINT 0xA5A5A5A5u

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; dst++) *dst = 0;
    uint32_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (dst = &_sstack; dst < sp - 16; dst++) *dst = STACK_PAINT;
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: CP10/CP11 (FPU, MVE) */
    __asm volatile("dsb\n isb");
    effai_exit(main());
}

uint32_t effai_stack_used(void)
{
    const uint32_t *p = &_sstack;
    while (p < &_estack && *p == STACK_PAINT) p++;
    return (uint32_t)((const uint8_t *)&_estack - (const uint8_t *)p);
}

static void Fault_Handler(void) { effai_exit(99); }

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler,
};
