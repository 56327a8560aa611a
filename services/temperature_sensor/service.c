/*
 * temperature_sensor: publishes the node's temperature every `rate` ms.
 *
 * Output `value` (float) is mapped to /3303/x/5700 by service.toml; input
 * `rate` (int, ms, >= 1000) changes the period, which starts at 30 s.
 */
#include <embserve.h>

#define DEFAULT_RATE_MS 30000
#define MIN_RATE_MS     1000

static volatile uint8_t running;
static volatile int32_t rate_ms;

int setup(void)
{
    embserve_printf("%s started!", EMBSERVE_SERVICE_NAME);
    running = 1;
    rate_ms = DEFAULT_RATE_MS;
    return 0;
}

void loop(void)
{
    embserve_sensor_data_t reading;
    int sensor = 0;

    embserve_printf("Loop");
    memset(&reading, 0, sizeof(reading));
    while (running) {
        if (embserve_get_sensor(EMBSERVE_SENSOR_TEMPERATURE, &sensor) < 0) {
            embserve_printf("Failed to get sensor!");
            return;
        }
        if (embserve_get_sensor_data(sensor, &reading) < 0) {
            embserve_printf("Failed to get sensor data!");
            return;
        }
        embserve_io_t out = {.key = "value", .type = EMBSERVE_TYPE_FLOAT};
        out.data = &reading.values[0];
        out.data_len = 1;
        embserve_output(&out);
        embserve_sleep(rate_ms);
    }
}

void on_input(embserve_io_t *io)
{
    embserve_printf("on_input(): (%s,%d,%d)", io->key, io->type, (int)io->data_len);
    if (strcmp(io->key, "rate") != 0)
        return;
    int32_t requested = *(const int32_t *)io->data;
    if (requested < MIN_RATE_MS) {
        embserve_printf("on_input(): Bad input. Rate too low (%d)", (int)requested);
        return;
    }
    rate_ms = requested;
    embserve_printf("on_input(): New rate %d ms", (int)requested);
}

void on_quit(void)
{
    running = 0;
}
