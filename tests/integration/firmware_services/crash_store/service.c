/* Publishes one reading, then stores to 0xFFFFFFF0: the runtime must stop
 * just this service (BusFault) and keep the node running. */
#include <embserve.h>

int setup(void)
{
    embserve_printf("crash_store armed");
    return 0;
}

void loop(void)
{
    int32_t one = 1;
    embserve_io_t out = {.key = "value", .type = EMBSERVE_TYPE_INT, .data = &one, .data_len = 1};
    embserve_output(&out);
    embserve_sleep(200);
    *(volatile uint32_t *)0xFFFFFFF0u = 0xDEADu;
    embserve_printf("still alive after the bad store");
}
