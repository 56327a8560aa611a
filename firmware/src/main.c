/* Boot and the main loop: network, LwM2M, runtime deliveries, shell; sleep when idle. */
#include <stdio.h>

#include "board.h"
#include "lwm2m.h"
#include "net.h"
#include "runtime/runtime.h"
#include "shell.h"
#include "systick.h"
#include "uart.h"

int main(void)
{
    board_init();
    uart_init();
    printf("*** Booting %s v%s ***\n", FW_NAME, FW_VERSION);
    /* The scheduler must exist before the first tick reaches sched_tick(). */
    rt_init();
    systick_init();
    net_init();
    lwm2m_init();
    shell_init();

    for (;;) {
        int work = net_service();
        lwm2m_poll(fw_millis());
        rt_poll();
        work += shell_poll();
        /* Any interrupt (console byte, Ethernet frame, the 1 ms tick) ends the idle wait. */
        if (!work)
            sched_idle();
    }
}
