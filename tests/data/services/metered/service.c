/*
 * metered: every period one sensor read, one output, one sleep, and
 * EXTRA_ROUNDS rounds of arithmetic (none here: loop() is straight-line code
 * between two sleeps, so its instructions per period can be counted in its
 * disassembly). The tests build a heavier version with more rounds.
 */
#include <embserve.h>

#define EXTRA_ROUNDS 0

static volatile uint8_t running;
static volatile int32_t acc;
static int sensor;
static embserve_sensor_data_t reading;
static embserve_io_t out = {.key = "value", .type = EMBSERVE_TYPE_FLOAT, .data_len = 1};

int setup(void)
{
    running = 1;
    out.data = &reading.values[0];
    return embserve_get_sensor(EMBSERVE_SENSOR_TEMPERATURE, &sensor);
}

void loop(void)
{
    while (running) {
        embserve_get_sensor_data(sensor, &reading);
        embserve_output(&out);
        for (int32_t i = 0; i < EXTRA_ROUNDS; i++)
            acc += i;
        embserve_sleep(1000);
    }
}

void on_quit(void)
{
    running = 0;
}
