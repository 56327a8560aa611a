#include <embserve.h>

static volatile uint8_t running;
static int32_t count;
static int32_t step = 1;
static float scale = 0.5f;
/* initialised pointers: data relocations */
static const char *const phases[] = {"even", "odd"};
static int32_t *const count_ptr = &count;

static void publish(const char *key, uint8_t type, void *value)
{
    embserve_io_t io;
    memset(&io, 0, sizeof(io));
    for (int i = 0; key[i] && i < EMBSERVE_KEY_MAX - 1; i++)
        io.key[i] = key[i];
    io.type = type;
    io.data = value;
    io.data_len = 1;
    embserve_output(&io);
}

int setup(void)
{
    running = 1;
    count = 0;
    embserve_printf("counter: step %d scale %f", (int)step, (double)scale);
    return 0;
}

void loop(void)
{
    while (running) {
        float scaled = (float)*count_ptr * scale;
        publish("count", EMBSERVE_TYPE_INT, count_ptr);
        publish("scaled", EMBSERVE_TYPE_FLOAT, &scaled);
        publish("undeclared", EMBSERVE_TYPE_INT, count_ptr);
        embserve_printf("tick %d is %s|%5.2f|%-4s|%u|%x|%c|%%|%lu", (int)count, phases[count & 1],
                        (double)scaled, "ab", (unsigned)count, (unsigned)(count * 255), 'A' + (int)(count % 26),
                        (unsigned long)4000000000u);
        count += step;
        embserve_sleep(1000);
    }
    embserve_printf("counter: bye");
}

void on_input(embserve_io_t *io)
{
    if (strcmp(io->key, "step") == 0)
        step = *(int32_t *)io->data;
    else if (strcmp(io->key, "scale") == 0)
        scale = *(float *)io->data;
    embserve_printf("counter: %s set", io->key);
}

void on_quit(void)
{
    running = 0;
}
