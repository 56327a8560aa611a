/* ARMv7-M system registers, interrupt masking and the thread context used by the runtime. */
#ifndef RT_ARCH_H
#define RT_ARCH_H

#include <stdint.h>

#define RT_REG(addr) (*(volatile uint32_t *)(addr))

#define SCB_ICSR   RT_REG(0xE000ED04u)
#define SCB_AIRCR  RT_REG(0xE000ED0Cu)
#define SCB_CCR    RT_REG(0xE000ED14u)
#define SCB_SHPR3  RT_REG(0xE000ED20u)
#define SCB_SHCSR  RT_REG(0xE000ED24u)
#define SCB_CFSR   RT_REG(0xE000ED28u)
#define SCB_HFSR   RT_REG(0xE000ED2Cu)
#define SCB_MMFAR  RT_REG(0xE000ED34u)
#define SCB_BFAR   RT_REG(0xE000ED38u)
#define SYST_CSR   RT_REG(0xE000E010u)
#define SYST_RVR   RT_REG(0xE000E014u)
#define SYST_CVR   RT_REG(0xE000E018u)
#define MPU_TYPE   RT_REG(0xE000ED90u)
#define MPU_CTRL   RT_REG(0xE000ED94u)
#define MPU_RNR    RT_REG(0xE000ED98u)
#define MPU_RBAR   RT_REG(0xE000ED9Cu)
#define MPU_RASR   RT_REG(0xE000EDA0u)

/* A thread's saved context, at its PSP (PendSV and the fault handler save
 * and restore it): r4-r11, then on cores with an FPU its EXC_RETURN and,
 * when that says the thread has used the FPU (bit 4 clear: an extended
 * frame), s16-s31 above it. The hardware frame (with s0-s15 and FPSCR in the
 * extended case, saved lazily) lies beyond. */
#ifdef __ARM_FP
#define SAVE_CONTEXT     "tst lr, #0x10\n it eq\n vstmdbeq r0!, {s16-s31}\n stmdb r0!, {r4-r11, lr}\n"
#define RESTORE_CONTEXT  "ldmia r0!, {r4-r11, lr}\n tst lr, #0x10\n it eq\n vldmiaeq r0!, {s16-s31}\n"
#else
#define SAVE_CONTEXT     "stmdb r0!, {r4-r11}\n"
#define RESTORE_CONTEXT  "ldmia r0!, {r4-r11}\n mvn lr, #2\n" /* EXC_RETURN 0xFFFFFFFD: thread mode, PSP */
#endif

#define ICSR_PENDSVSET (1u << 28)
#define ICSR_PENDSTSET (1u << 26)

static inline uint32_t rt_irq_save(void)
{
    uint32_t primask;
    __asm volatile("mrs %0, primask\n cpsid i" : "=r"(primask) : : "memory");
    return primask;
}

static inline void rt_irq_restore(uint32_t primask)
{
    __asm volatile("msr primask, %0" : : "r"(primask) : "memory");
}

static inline void rt_barrier(void)
{
    __asm volatile("dsb\n isb" : : : "memory");
}

#endif
