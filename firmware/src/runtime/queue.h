/* Records that service threads hand to the main thread (console lines and
 * outputs); rt_poll() drains them.  IRQ-masked critical sections make the
 * ring safe between preemptible threads. */
#ifndef RT_QUEUE_H
#define RT_QUEUE_H

#include <stdint.h>

#define RTQ_LINE_MAX  120
#define RTQ_DATA_MAX  32
#define RTQ_DEPTH     32

enum { RTQ_CONSOLE = 1, RTQ_OUTPUT = 2 };

typedef struct {
    uint8_t  kind;
    uint8_t  slot;
    uint8_t  out_idx;
    uint8_t  type;
    uint16_t gen;       /* slot generation: records of a removed service are dropped */
    uint16_t len;       /* line length or data bytes */
    union {
        char    line[RTQ_LINE_MAX + 1];
        uint8_t data[RTQ_DATA_MAX];
    } u;
} rtq_rec_t;

int  rtq_push(const rtq_rec_t *r);  /* 0, or -1 when full */
int  rtq_pop(rtq_rec_t *r);         /* 1 when a record was taken, 0 when empty */
void rtq_reset(void);
uint32_t rtq_dropped(void);
void rtq_count_drop(void);

#endif
