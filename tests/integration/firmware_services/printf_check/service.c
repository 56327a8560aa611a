/* Every conversion the SDK documents, with doubles at both AAPCS
 * alignments (right after the format string, and after one int). */
#include <embserve.h>

static volatile uint8_t running;

int setup(void)
{
    running = 1;
    embserve_printf("f=%f", 21.5);
    embserve_printf("d=%d f=%.2f s=%s", -7, 3.25, "txt");
    embserve_printf("u=%u lu=%lu x=%x c=%c i=%i pct=%%", 4000000000u, 123456789ul, 0xbeef, 'Z', 42);
    embserve_printf("two\nlines");
    embserve_printf("w=[%5d] [%-4s] [%05.1f]", 42, "ab", 2.5);
    embserve_printf("ll=%lld e=%e g=%g", -1234567890123ll, 1234.5, 0.0001);
    return 0;
}

void loop(void)
{
    float sum = 1.25f;
    int32_t count = 3;
    embserve_io_t a = {.key = "sum", .type = EMBSERVE_TYPE_FLOAT, .data = &sum, .data_len = 1};
    embserve_io_t b = {.key = "count", .type = EMBSERVE_TYPE_INT, .data = &count, .data_len = 1};
    embserve_io_t c = {.key = "undeclared", .type = EMBSERVE_TYPE_INT, .data = &count, .data_len = 1};
    embserve_output(&c);
    embserve_output(&a);
    embserve_output(&b);
    embserve_printf("outputs sent");
    while (running)
        embserve_sleep(20);
}

void on_quit(void)
{
    running = 0;
}
