/*
 * thermostat: how far the node's temperature is below a set point.
 *
 * Input `setpoint` (float, deg C) is mapped to /3308/x/5900 by service.toml,
 * so a server sets it with an LwM2M Write. Output `demand` (float) =
 * setpoint - temperature, on /3300/x/5700: at once for each new set point,
 * then every 5 s. Nothing is reported before the first set point.
 */
#include <embserve.h>

#define PERIOD_MS 5000

static volatile uint8_t running;
static volatile uint8_t given;
static float setpoint;

static void report(void)
{
    embserve_sensor_data_t reading;
    int sensor = 0;

    memset(&reading, 0, sizeof(reading));
    if (embserve_get_sensor(EMBSERVE_SENSOR_TEMPERATURE, &sensor) < 0 ||
        embserve_get_sensor_data(sensor, &reading) < 0) {
        embserve_printf("no temperature sensor");
        return;
    }
    float demand = setpoint - reading.values[0];
    embserve_io_t out = {.key = "demand", .type = EMBSERVE_TYPE_FLOAT};
    out.data = &demand;
    out.data_len = 1;
    embserve_output(&out);
}

int setup(void)
{
    embserve_printf("%s started", EMBSERVE_SERVICE_NAME);
    running = 1;
    given = 0;
    return 0;
}

void loop(void)
{
    while (running) {
        if (given)
            report();
        embserve_sleep(PERIOD_MS);
    }
}

void on_input(embserve_io_t *io)
{
    if (strcmp(io->key, "setpoint") != 0)
        return;
    setpoint = *(const float *)io->data;
    given = 1;
    embserve_printf("set point %.2f", (double)setpoint);
    report();
}

void on_quit(void)
{
    running = 0;
}
