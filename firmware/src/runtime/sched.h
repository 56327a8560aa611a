/* Preemptive round-robin scheduler for the main thread and service threads.
 *
 * Every thread runs in thread mode on the process stack (PSP); sched_init()
 * moves the main thread there and gives exception handlers their own MSP
 * stack.  PendSV switches contexts (r4-r11 saved on the outgoing process
 * stack, on cores with an FPU also EXC_RETURN and, for a thread that used
 * the FPU, s16-s31; the rest by the hardware, see rt_arch.h).  sched_tick() (SysTick, 1 kHz) wakes
 * sleepers and ends time slices.  Thread 0 is the main thread, always
 * runnable; it runs when no service thread is ready and at least every other
 * slice while a service hogs the CPU.
 *
 * Service stacks get a canary at the bottom and, when the core has an MPU, a
 * 32-byte no-access guard region there so an overflow faults at once.
 */
#ifndef RT_SCHED_H
#define RT_SCHED_H

#include <stdint.h>

#include "runtime.h"

#define SCHED_MAX_THREADS  (1 + 2 * RT_MAX_SERVICES)
#define SCHED_MAIN         0
#define SCHED_SLICE_MS     5
#define SCHED_GUARD_BYTES  32u
#define SCHED_STACK_ALIGN  32u

typedef void (*sched_entry_fn)(void *arg);

void     sched_init(void);
/* Start thread tid (1..SCHED_MAX_THREADS-1, must not be running) on
 * [stack, stack + bytes) (SCHED_STACK_ALIGN-aligned); owner is the service
 * slot.  Fixed ids let the runtime tell "ended" from "id reused".  0 or -1. */
int      sched_spawn(int tid, sched_entry_fn entry, void *arg, void *stack, uint32_t bytes, int owner);
void     sched_kill(int tid);       /* from the main thread; the thread never runs again */
int      sched_alive(int tid);
void     sched_sleep(uint32_t ms);  /* block the calling thread; 0 = yield */
void     sched_wake(int tid);       /* end a sleep early */
void     sched_yield(void);
int      sched_current(void);
int      sched_owner(int tid);
uint32_t sched_millis(void);
uint64_t sched_micros(void);
uint32_t sched_cpu_permille(int tid);   /* share of the last full second */
/* Deepest use seen of a stack a thread was started on, in bytes. */
uint32_t sched_stack_peak(const void *stack, uint32_t bytes);
uint32_t sched_switch_count(void);
int      sched_has_mpu_guard(void);
/* Guard region of the running thread (0 when none) and the lowest address
 * its stack may use (0 for the main thread), for fault messages. */
uint32_t sched_guard_base(void);
uint32_t sched_stack_floor(void);

/* Exception-context helpers (fault.c): end the running thread and return
 * the saved stack pointer of the thread to resume. */
uint32_t sched_fault_switch(void);

#endif
