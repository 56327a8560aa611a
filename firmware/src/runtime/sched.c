#include "sched.h"

#include <string.h>

#include "rt_arch.h"
#include "rt_internal.h"

void systick_idle(uint32_t max_ms); /* systick.c: wait for an interrupt, with a long tick while idle */

enum { T_FREE = 0, T_READY, T_SLEEPING };

typedef struct {
    uint32_t  sp;           /* saved PSP, pointing at r4-r11 */
    uint8_t   state;
    int8_t    owner;        /* service slot, -1 for the main thread */
    uint32_t  wake;         /* tick at which a sleeper becomes ready */
    uint32_t *stack_lo;     /* first usable word (just above the guard) */
    uint32_t *stack_hi;
    uint32_t  guard;        /* base of the 32-byte guard region, 0 = none */
    uint64_t  cpu_us;
    uint64_t  window_us;
    uint32_t  permille;
} thread_t;

#define STACK_CANARY 0x5AFEC0DEu
#define STACK_FILL   0xA5A5A5A5u
#define HANDLER_STACK_BYTES 3072u
#define MPU_GUARD_REGION 7u

static thread_t th[SCHED_MAX_THREADS];
static volatile int cur;
static volatile uint32_t ticks;
static uint32_t slice_start;
static uint64_t last_us;
static uint32_t switches;
static int ready;
static int mpu_guard;
static uint64_t handler_stack[HANDLER_STACK_BYTES / 8];

uint32_t sched_switch(uint32_t sp) __attribute__((used));
void PendSV_Handler(void);

uint32_t sched_millis(void)
{
    return ticks;
}

uint64_t sched_micros(void)
{
    uint32_t s = rt_irq_save();
    uint32_t t = ticks;
    uint32_t v = SYST_CVR;
    uint32_t pend = SCB_ICSR & ICSR_PENDSTSET;
    uint32_t load = SYST_RVR & 0xFFFFFFu;
    uint32_t running = SYST_CSR & 1u;
    rt_irq_restore(s);

    uint64_t us = (uint64_t)t * 1000u;
    uint32_t per_us = (load + 1u) / 1000u;
    if (running && per_us) {
        uint32_t frac = (load - v) / per_us;
        if (frac > 999u)
            frac = 999u;
        /* A tick that fired but has not been serviced yet (we are in a
         * handler or masked): VAL already restarted from LOAD. */
        if (pend && v > load / 2u)
            us += 1000u;
        us += frac;
    }
    return us;
}

static void account(void)
{
    uint64_t now = sched_micros();
    if (now > last_us)
        th[cur].cpu_us += now - last_us;
    last_us = now;
}

static void mpu_select(uint32_t guard)
{
    if (!mpu_guard)
        return;
    MPU_RNR = MPU_GUARD_REGION;
    if (guard) {
        MPU_RBAR = guard;
        /* XN, no access for anyone, 32 bytes (SIZE = 4), enabled. */
        MPU_RASR = (1u << 28) | (4u << 1) | 1u;
    } else {
        MPU_RASR = 0;
    }
    rt_barrier();
}

static int stack_intact(const thread_t *t)
{
    return t->stack_lo[0] == STACK_CANARY && t->sp >= (uint32_t)(t->stack_lo + 1);
}

static int pick_next(void)
{
    for (int k = 1; k <= SCHED_MAX_THREADS; k++) {
        int i = (cur + k) % SCHED_MAX_THREADS;
        if (th[i].state == T_READY)
            return i;
    }
    return SCHED_MAIN;
}

static void switch_to(int n)
{
    cur = n;
    slice_start = ticks;
    switches++;
    mpu_select(th[n].guard);
}

/* Called by PendSV_Handler with interrupts masked: sp is the outgoing
 * thread's PSP after r4-r11 were pushed; returns the incoming one's. */
uint32_t sched_switch(uint32_t sp)
{
    thread_t *t = &th[cur];

    t->sp = sp;
    account();
    if (cur != SCHED_MAIN && t->state != T_FREE && !stack_intact(t)) {
        t->state = T_FREE;
        rt_thread_faulted(t->owner, cur, "stack overflow");
    }
    int n = pick_next();
    switch_to(n);
    return th[n].sp;
}

uint32_t sched_fault_switch(void)
{
    th[cur].state = T_FREE;
    account();
    int n = pick_next();
    switch_to(n);
    return th[n].sp;
}

__attribute__((naked)) void PendSV_Handler(void)
{
    __asm volatile(
        "cpsid i\n"
        "mrs r0, psp\n"
        SAVE_CONTEXT
        "bl sched_switch\n"
        RESTORE_CONTEXT
        "msr psp, r0\n"
        "cpsie i\n"
        "bx lr\n");
}

static void pend_switch(void)
{
    SCB_ICSR = ICSR_PENDSVSET;
}

void sched_yield(void)
{
    if (!ready)
        return;
    pend_switch();
    rt_barrier();
}

/* Where a thread's entry function returns to. */
static void thread_return(void)
{
    uint32_t s = rt_irq_save();
    th[cur].state = T_FREE;
    pend_switch();
    rt_irq_restore(s);
    rt_barrier();
    for (;;)
        ;
}

static void move_main_to_psp(void)
{
    uint32_t control;
    uint32_t top = (uint32_t)&handler_stack[HANDLER_STACK_BYTES / 8];

    __asm volatile("mrs %0, control" : "=r"(control));
    if (control & 2u)
        return;     /* the platform already runs threads on PSP */
    /* The main thread keeps its stack (now as PSP); handlers get their own. */
    __asm volatile(
        "mrs r0, msp\n"
        "msr psp, r0\n"
        "mrs r0, control\n"
        "orr r0, r0, #2\n"
        "msr control, r0\n"
        "isb\n"
        "msr msp, %0\n"
        "isb\n"
        : : "r"(top) : "r0", "memory");
}

void sched_init(void)
{
    uint32_t s = rt_irq_save();

    memset(th, 0, sizeof(th));
    th[SCHED_MAIN].state = T_READY;
    th[SCHED_MAIN].owner = -1;
    cur = SCHED_MAIN;
    /* PendSV at the lowest priority so it never preempts an interrupt. */
    SCB_SHPR3 = (SCB_SHPR3 & ~(0xFFu << 16)) | (0xFFu << 16);
    mpu_guard = ((MPU_TYPE >> 8) & 0xFFu) > MPU_GUARD_REGION;
    if (mpu_guard) {
        MPU_RNR = MPU_GUARD_REGION;
        MPU_RASR = 0;
        /* Background map for privileged code, so only the guard is checked. */
        MPU_CTRL = (1u << 2) | 1u;
        rt_barrier();
    }
    move_main_to_psp();
    last_us = sched_micros();
    slice_start = ticks;
    ready = 1;
    rt_irq_restore(s);
}

int sched_spawn(int id, sched_entry_fn entry, void *arg, void *stack, uint32_t bytes, int owner)
{
    uint32_t lo = (uint32_t)stack;

    if (!ready || id <= SCHED_MAIN || id >= SCHED_MAX_THREADS || th[id].state != T_FREE ||
        (lo % SCHED_STACK_ALIGN) != 0 || bytes < 256u)
        return -1;

    thread_t *t = &th[id];
    uint32_t *hi = (uint32_t *)((lo + bytes) & ~7u);
    uint32_t *lo_usable = (uint32_t *)(lo + SCHED_GUARD_BYTES);

    for (uint32_t *p = (uint32_t *)lo; p < hi; p++)
        *p = STACK_FILL;
    lo_usable[0] = STACK_CANARY;

    uint32_t *sp = hi;
    *--sp = 0x01000000u;                            /* xPSR: Thumb */
    *--sp = (uint32_t)entry & ~1u;                  /* PC */
    *--sp = (uint32_t)thread_return;                /* LR */
    *--sp = 0;                                      /* r12 */
    *--sp = 0;                                      /* r3 */
    *--sp = 0;                                      /* r2 */
    *--sp = 0;                                      /* r1 */
    *--sp = (uint32_t)arg;                          /* r0 */
#ifdef __ARM_FP
    *--sp = 0xFFFFFFFDu;                            /* EXC_RETURN: thread mode, PSP, no FPU state yet */
#endif
    for (int r = 0; r < 8; r++)
        *--sp = 0;                                  /* r11..r4 */

    uint32_t s = rt_irq_save();
    t->sp = (uint32_t)sp;
    t->owner = (int8_t)owner;
    t->stack_lo = lo_usable;
    t->stack_hi = hi;
    t->guard = mpu_guard ? lo : 0;
    t->cpu_us = 0;
    t->window_us = 0;
    t->permille = 0;
    t->state = T_READY;
    rt_irq_restore(s);
    return 0;
}

void sched_kill(int tid)
{
    if (tid <= SCHED_MAIN || tid >= SCHED_MAX_THREADS)
        return;
    uint32_t s = rt_irq_save();
    th[tid].state = T_FREE;
    rt_irq_restore(s);
    if (tid == cur)
        thread_return();
}

int sched_alive(int tid)
{
    if (tid < 0 || tid >= SCHED_MAX_THREADS)
        return 0;
    return th[tid].state != T_FREE;
}

void sched_sleep(uint32_t ms)
{
    if (!ready)
        return;
    if (cur == SCHED_MAIN) {
        uint32_t t0 = ticks;
        while ((uint32_t)(ticks - t0) < ms)
            sched_idle();
        return;
    }
    if (ms == 0) {
        sched_yield();
        return;
    }
    if (ms > 0x7FFFFFFFu)
        ms = 0x7FFFFFFFu;   /* wake times are compared as signed differences */
    uint32_t s = rt_irq_save();
    th[cur].wake = ticks + ms;
    th[cur].state = T_SLEEPING;
    pend_switch();
    rt_irq_restore(s);      /* PendSV is taken here */
    rt_barrier();
}

void sched_wake(int tid)
{
    if (tid <= SCHED_MAIN || tid >= SCHED_MAX_THREADS)
        return;
    uint32_t s = rt_irq_save();
    if (th[tid].state == T_SLEEPING) {
        th[tid].state = T_READY;
        if (cur == SCHED_MAIN)
            pend_switch();
    }
    rt_irq_restore(s);
}

int sched_current(void)
{
    return cur;
}

int sched_owner(int tid)
{
    if (tid < 0 || tid >= SCHED_MAX_THREADS || th[tid].state == T_FREE)
        return -1;
    return th[tid].owner;
}

static int service_ready(void)
{
    for (int i = 1; i < SCHED_MAX_THREADS; i++)
        if (th[i].state == T_READY)
            return 1;
    return 0;
}

void sched_tick(void)
{
    ticks++;
    if (!ready)
        return;

    uint32_t now = ticks;
    int need = 0;
    for (int i = 1; i < SCHED_MAX_THREADS; i++) {
        if (th[i].state == T_SLEEPING && (int32_t)(now - th[i].wake) >= 0) {
            th[i].state = T_READY;
            if (cur == SCHED_MAIN)
                need = 1;   /* services run ahead of an idle or busy main loop */
        }
    }
    if ((uint32_t)(now - slice_start) >= SCHED_SLICE_MS && (cur != SCHED_MAIN || service_ready()))
        need = 1;
    if (now % 1000u == 0) {
        account();
        for (int i = 0; i < SCHED_MAX_THREADS; i++) {
            uint64_t used = th[i].cpu_us - th[i].window_us;
            th[i].window_us = th[i].cpu_us;
            th[i].permille = used >= 1000000u ? 1000u : (uint32_t)(used / 1000u);
        }
    }
    if (need)
        pend_switch();
}

void sched_idle(void)
{
    if (!ready || cur != SCHED_MAIN)
        return;
    if (service_ready()) {
        sched_yield();
        return;
    }
    /* The long idle tick must not make a sleeping service late: tick no
     * later than the earliest wake-up. Interrupts stay masked until the
     * tick is set and the CPU waits (WFI wakes on a pending interrupt even
     * when masked; the handler runs once they are unmasked), so no tick
     * falls between reading the wake-ups and programming SysTick. */
    uint32_t s = rt_irq_save();
    uint32_t until = 0xFFFFFFFFu;
    for (int i = 1; i < SCHED_MAX_THREADS; i++) {
        if (th[i].state == T_SLEEPING) {
            int32_t left = (int32_t)(th[i].wake - ticks);
            uint32_t ms = left > 0 ? (uint32_t)left : 1u;
            if (ms < until)
                until = ms;
        }
    }
    systick_idle(until);
    rt_irq_restore(s);
}

uint32_t sched_cpu_permille(int tid)
{
    if (tid < 0 || tid >= SCHED_MAX_THREADS)
        return 0;
    return th[tid].permille;
}

uint32_t sched_stack_peak(const void *stack, uint32_t bytes)
{
    const uint32_t *p = (const uint32_t *)((uint32_t)stack + SCHED_GUARD_BYTES) + 1;   /* above the canary */
    const uint32_t *hi = (const uint32_t *)(((uint32_t)stack + bytes) & ~7u);
    while (p < hi && *p == STACK_FILL)
        p++;
    return (uint32_t)((const uint8_t *)hi - (const uint8_t *)p);
}

uint32_t sched_switch_count(void)
{
    return switches;
}

int sched_has_mpu_guard(void)
{
    return mpu_guard;
}

uint32_t sched_guard_base(void)
{
    return th[cur].guard;
}

uint32_t sched_stack_floor(void)
{
    return cur == SCHED_MAIN ? 0 : (uint32_t)(th[cur].stack_lo + 1);
}
