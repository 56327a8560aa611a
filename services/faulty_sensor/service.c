/*
 * faulty_sensor: the temperature service plus a calibration offset and a
 * histogram of what it measured, with a bug left in on purpose.
 *
 * Every `PERIOD_MS` it publishes the calibrated reading (input `offset`,
 * float, degrees Celsius, starts at 0) on output `value` and counts it in a
 * histogram of one-degree buckets from -40 to +85 degrees Celsius.
 *
 * THE BUG: loop() does not check that the bucket is in range. A
 * modest offset that pushes a reading off the scale corrupts memory next to
 * the histogram silently; an offset of -2e8 (the value the sample test
 * writes) sends the store to an address that nothing backs, and loop()
 * faults there on every target.
 */
#include <embserve.h>

#define PERIOD_MS  2000
#define LOWEST_C   (-40)
#define BUCKETS    126

static volatile uint8_t running;
static volatile float offset_c;
static uint32_t histogram[BUCKETS];

int setup(void)
{
    embserve_printf("%s started!", EMBSERVE_SERVICE_NAME);
    running = 1;
    offset_c = 0.0f;
    return 0;
}

void loop(void)
{
    embserve_sensor_data_t reading;
    int sensor = 0;

    memset(&reading, 0, sizeof(reading));
    while (running) {
        if (embserve_get_sensor(EMBSERVE_SENSOR_TEMPERATURE, &sensor) < 0 ||
            embserve_get_sensor_data(sensor, &reading) < 0) {
            embserve_printf("Failed to read the temperature sensor!");
            return;
        }
        float calibrated = reading.values[0] + offset_c;
        int bucket = (int)(calibrated - LOWEST_C);
        histogram[bucket]++;    /* no range check: see the comment at the top */
        embserve_io_t out = {.key = "value", .type = EMBSERVE_TYPE_FLOAT};
        out.data = &calibrated;
        out.data_len = 1;
        embserve_output(&out);
        embserve_sleep(PERIOD_MS);
    }
}

void on_input(embserve_io_t *io)
{
    if (strcmp(io->key, "offset") != 0)
        return;
    offset_c = *(const float *)io->data;
    embserve_printf("on_input(): offset set");
}

void on_quit(void)
{
    running = 0;
}
