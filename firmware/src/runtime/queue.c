#include "queue.h"

#include <string.h>

#include "rt_arch.h"

static rtq_rec_t ring[RTQ_DEPTH];
static uint32_t head, tail;     /* free-running; head - tail = records queued */
static uint32_t dropped;

int rtq_push(const rtq_rec_t *r)
{
    uint32_t s = rt_irq_save();
    if (head - tail >= RTQ_DEPTH) {
        rt_irq_restore(s);
        return -1;
    }
    ring[head % RTQ_DEPTH] = *r;
    head++;
    rt_irq_restore(s);
    return 0;
}

int rtq_pop(rtq_rec_t *r)
{
    uint32_t s = rt_irq_save();
    if (head == tail) {
        rt_irq_restore(s);
        return 0;
    }
    *r = ring[tail % RTQ_DEPTH];
    tail++;
    rt_irq_restore(s);
    return 1;
}

void rtq_reset(void)
{
    uint32_t s = rt_irq_save();
    head = tail = 0;
    rt_irq_restore(s);
}

uint32_t rtq_dropped(void)
{
    return dropped;
}

void rtq_count_drop(void)
{
    uint32_t s = rt_irq_save();
    dropped++;
    rt_irq_restore(s);
}
