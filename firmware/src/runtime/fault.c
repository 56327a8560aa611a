/* Fault handlers.  A fault raised by a service thread stops that service
 * (state faulted, message naming the fault, PC and address) and the CPU
 * resumes another thread; anything else (main thread, an interrupt handler)
 * prints a register dump on the console and resets the node. */
#include <stdint.h>
#include <string.h>

#include "rt_arch.h"
#include "rt_internal.h"
#include "sched.h"
#include "../uart.h"

/* CFSR bits. */
#define IACCVIOL    (1u << 0)
#define DACCVIOL    (1u << 1)
#define MUNSTKERR   (1u << 3)
#define MSTKERR     (1u << 4)
#define MMARVALID   (1u << 7)
#define IBUSERR     (1u << 8)
#define PRECISERR   (1u << 9)
#define IMPRECISERR (1u << 10)
#define UNSTKERR    (1u << 11)
#define STKERR      (1u << 12)
#define BFARVALID   (1u << 15)
#define UNDEFINSTR  (1u << 16)
#define INVSTATE    (1u << 17)
#define INVPC       (1u << 18)
#define NOCP        (1u << 19)
#define UNALIGNED   (1u << 24)
#define DIVBYZERO   (1u << 25)


static const struct {
    uint32_t bit;
    const char *kind;
    const char *name;
} fault_bits[] = {
    {IACCVIOL, "MemManage", "IACCVIOL"},
    {DACCVIOL, "MemManage", "DACCVIOL"},
    {MSTKERR, "MemManage", "MSTKERR"},
    {MUNSTKERR, "MemManage", "MUNSTKERR"},
    {IBUSERR, "BusFault", "IBUSERR"},
    {PRECISERR, "BusFault", "PRECISERR"},
    {IMPRECISERR, "BusFault", "IMPRECISERR"},
    {STKERR, "BusFault", "STKERR"},
    {UNSTKERR, "BusFault", "UNSTKERR"},
    {UNDEFINSTR, "UsageFault", "UNDEFINSTR"},
    {INVSTATE, "UsageFault", "INVSTATE"},
    {INVPC, "UsageFault", "INVPC"},
    {NOCP, "UsageFault", "NOCP"},
    {UNALIGNED, "UsageFault", "UNALIGNED"},
    {DIVBYZERO, "UsageFault", "DIVBYZERO"},
};

typedef struct {
    char *buf;
    uint32_t cap;
    uint32_t len;
} str_t;

static void s_put(str_t *s, const char *t)
{
    while (*t && s->len + 1 < s->cap)
        s->buf[s->len++] = *t++;
    s->buf[s->len] = '\0';
}

static void s_hex(str_t *s, uint32_t v)
{
    char h[11] = "0x";
    for (int i = 0; i < 8; i++)
        h[2 + i] = "0123456789abcdef"[(v >> (28 - 4 * i)) & 0xFu];
    h[10] = '\0';
    s_put(s, h);
}

void rt_fault_init(void)
{
    /* Separate handlers for MemManage, BusFault and UsageFault, and trap
     * integer division by zero (otherwise it silently yields 0). */
    SCB_SHCSR |= (1u << 16) | (1u << 17) | (1u << 18);
    SCB_CCR |= (1u << 4);
    rt_barrier();
}

static void describe(str_t *s, uint32_t ipsr, uint32_t cfsr, uint32_t hfsr)
{
    for (uint32_t i = 0; i < sizeof(fault_bits) / sizeof(fault_bits[0]); i++) {
        if (cfsr & fault_bits[i].bit) {
            s_put(s, fault_bits[i].kind);
            s_put(s, " ");
            s_put(s, fault_bits[i].name);
            return;
        }
    }
    if (hfsr & (1u << 1)) {
        s_put(s, "HardFault VECTTBL");
        return;
    }
    switch (ipsr & 0x1FFu) {
    case 3: s_put(s, "HardFault"); break;
    case 4: s_put(s, "MemManage"); break;
    case 5: s_put(s, "BusFault"); break;
    case 6: s_put(s, "UsageFault"); break;
    default: s_put(s, "fault"); break;
    }
}

/* The console, polled: the fault may have come before the driver or inside it. */
static void uart_raw(const char *t)
{
    char piece[2] = {0, 0};
    for (; *t; t++) {
        if (*t == '\n')
            uart_puts_polled("\r");
        piece[0] = *t;
        uart_puts_polled(piece);
    }
}

static void __attribute__((noreturn)) fatal(const char *what, uint32_t exc_return, const uint32_t *frame,
                                            int frame_ok, const uint32_t *r4_r11, uint32_t cfsr, uint32_t hfsr,
                                            uint32_t mmfar, uint32_t bfar)
{
    static const char *const names[] = {"r0", "r1", "r2", "r3", "r12", "lr", "pc", "xpsr"};
    char line[96];
    str_t s = {line, sizeof(line), 0};

    s_put(&s, "\n*** FATAL ");
    s_put(&s, what);
    s_put(&s, exc_return & 8u ? " in thread mode" : " in handler mode");
    s_put(&s, " ***\n");
    uart_raw(line);
    if (frame_ok) {
        for (int i = 0; i < 8; i++) {
            s.len = 0;
            s_put(&s, names[i]);
            s_put(&s, "=");
            s_hex(&s, frame[i]);
            s_put(&s, (i % 4) == 3 ? "\n" : " ");
            uart_raw(line);
        }
    } else {
        uart_raw("(exception frame not stacked)\n");
    }
    for (int i = 0; i < 8; i++) {
        s.len = 0;
        s_put(&s, "r");
        char n[3] = {(char)('0' + (4 + i) / 10), (char)('0' + (4 + i) % 10), 0};
        s_put(&s, 4 + i < 10 ? n + 1 : n);
        s_put(&s, "=");
        s_hex(&s, r4_r11[i]);
        s_put(&s, (i % 4) == 3 ? "\n" : " ");
        uart_raw(line);
    }
    s.len = 0;
    s_put(&s, "sp=");
    s_hex(&s, (uint32_t)frame);
    s_put(&s, " exc_return=");
    s_hex(&s, exc_return);
    s_put(&s, " cfsr=");
    s_hex(&s, cfsr);
    s_put(&s, "\n");
    uart_raw(line);
    s.len = 0;
    s_put(&s, "hfsr=");
    s_hex(&s, hfsr);
    s_put(&s, " mmfar=");
    s_hex(&s, mmfar);
    s_put(&s, " bfar=");
    s_hex(&s, bfar);
    s_put(&s, "\nresetting\n");
    uart_raw(line);
    SCB_AIRCR = 0x05FA0004u;    /* SYSRESETREQ */
    rt_barrier();
    for (;;)
        ;
}

uint32_t rt_fault_handle(uint32_t exc_return, uint32_t msp, uint32_t psp, const uint32_t *r4_r11)
    __attribute__((used));
void rt_fault_entry(void);
void HardFault_Handler(void);
void MemManage_Handler(void);
void BusFault_Handler(void);
void UsageFault_Handler(void);

/* Returns the saved PSP of the thread to resume (the faulting service is
 * gone); never returns for a fatal fault. */
uint32_t rt_fault_handle(uint32_t exc_return, uint32_t msp, uint32_t psp, const uint32_t *r4_r11)
{
    uint32_t ipsr;
    __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
    uint32_t cfsr = SCB_CFSR;
    uint32_t hfsr = SCB_HFSR;
    uint32_t mmfar = SCB_MMFAR;
    uint32_t bfar = SCB_BFAR;
    SCB_CFSR = cfsr;        /* write-one-to-clear */
    SCB_HFSR = hfsr;

    int on_psp = (exc_return & 4u) != 0;
    int thread_mode = (exc_return & 8u) != 0;
    const uint32_t *frame = (const uint32_t *)(on_psp ? psp : msp);
    int frame_ok = (cfsr & (MSTKERR | STKERR)) == 0;
    uint32_t pc = frame_ok ? frame[6] : 0;
    int tid = sched_current();
    int slot = sched_owner(tid);

    char msg[64];
    str_t s = {msg, sizeof(msg), 0};
    uint32_t guard = sched_guard_base();
    uint32_t floor = sched_stack_floor();
    int mm_addr_valid = (cfsr & MMARVALID) != 0;
    /* Either the guard region caught it, or the stack pointer is already
     * below the stack (a large frame jumped over the guard). */
    int overflow = (guard && (((cfsr & DACCVIOL) && mm_addr_valid && mmfar - guard < SCHED_GUARD_BYTES) ||
                              (cfsr & MSTKERR))) ||
                   (on_psp && floor && psp < floor);
    if (overflow) {
        s_put(&s, "stack overflow (");
        describe(&s, ipsr, cfsr, hfsr);
        s_put(&s, ")");
    } else {
        describe(&s, ipsr, cfsr, hfsr);
    }
    if (frame_ok) {
        s_put(&s, " pc=");
        int code_slot = rt_slot_of_code(pc);
        if (code_slot == slot && slot >= 0) {
            s_put(&s, "+");
            uint32_t off = pc - rt_slot_code_base(slot);
            char h[12];
            str_t o = {h, sizeof(h), 0};
            s_hex(&o, off);
            /* Keep the message short: "+0x1c4" rather than "+0x000001c4". */
            const char *p = h + 2;
            while (*p == '0' && p[1])
                p++;
            s_put(&s, "0x");
            s_put(&s, p);
        } else {
            s_hex(&s, pc);
        }
    }
    if (mm_addr_valid && (cfsr & (IACCVIOL | DACCVIOL))) {
        s_put(&s, " addr=");
        s_hex(&s, mmfar);
    } else if (cfsr & BFARVALID) {
        s_put(&s, " addr=");
        s_hex(&s, bfar);
    }

    if (thread_mode && on_psp && tid != SCHED_MAIN && slot >= 0) {
        rt_thread_faulted(slot, tid, msg);
        if (frame_ok)
            rt_thread_fault_registers(slot, frame);
        return sched_fault_switch();
    }
    fatal(msg, exc_return, frame, frame_ok, r4_r11, cfsr, hfsr, mmfar, bfar);
}

/* On cores with an FPU, a lazy save of the faulting thread's s0-s15 may be
 * pending (FPCCR.LSPACT): it is dropped, since that thread never runs
 * again and its stack may be what faulted. */
#ifdef __ARM_FP
#define DROP_LAZY_FP_SAVE "ldr r12, =0xE000EF34\n ldr r1, [r12]\n bic r1, r1, #1\n str r1, [r12]\n"
#else
#define DROP_LAZY_FP_SAVE ""
#endif

__attribute__((naked)) void rt_fault_entry(void)
{
    __asm volatile(
        DROP_LAZY_FP_SAVE
        "mov r0, lr\n"              /* EXC_RETURN */
        "mrs r1, msp\n"
        "mrs r2, psp\n"
        "push {r4-r11}\n"           /* for the register dump */
        "mov r3, sp\n"
        "bl rt_fault_handle\n"
        "add sp, sp, #32\n"
        RESTORE_CONTEXT             /* resume the thread the scheduler chose */
        "msr psp, r0\n"
        "cpsie i\n"                 /* the dead thread may have masked interrupts */
        "bx lr\n"
        ".ltorg\n");
}

void HardFault_Handler(void) __attribute__((alias("rt_fault_entry")));
void MemManage_Handler(void) __attribute__((alias("rt_fault_entry")));
void BusFault_Handler(void) __attribute__((alias("rt_fault_entry")));
void UsageFault_Handler(void) __attribute__((alias("rt_fault_entry")));
