#include <embserve.h>

static volatile uint8_t running;
static volatile uint8_t given;
static float level;

static void report(void)
{
    embserve_io_t out;
    memset(&out, 0, sizeof(out));
    out.key[0] = 'v'; out.key[1] = 'a'; out.key[2] = 'l'; out.key[3] = 'u'; out.key[4] = 'e';
    out.type = EMBSERVE_TYPE_FLOAT;
    out.data = &level;
    out.data_len = 1;
    embserve_output(&out);
}

int setup(void)
{
    running = 1;
    given = 0;
    return 0;
}

void loop(void)
{
    while (running) {
        if (given)
            report();
        embserve_sleep(1000);
    }
}

void on_input(embserve_io_t *io)
{
    if (strcmp(io->key, "level") == 0) {
        level = *(float *)io->data;
        given = 1;
        report(); /* the first output right away: observers hear of it at once */
    }
}

void on_quit(void)
{
    running = 0;
}
