/* 1 kHz system tick: the firmware's millisecond clock and the scheduler's pulse. */
#ifndef SYSTICK_H
#define SYSTICK_H

#include <stdint.h>

void systick_init(void);
/* Milliseconds since boot; wraps after ~49 days. */
uint32_t fw_millis(void);
/* Wait for an interrupt with a long tick (IDLE_TICK_MS, or max_ms when sooner), then count the time that
 * passed (systick.c). */
void systick_idle(uint32_t max_ms);

#endif
