/* Loads all 32 FPU registers with a pattern of its own, spins for several
 * scheduler slices (preempted meanwhile by the other threads, a second
 * fpu_check among them), then reads them back. Two instances load different
 * patterns (each has its own data, so the address of its counters differs),
 * so a context switch that does not save s0-s31 shows up as "bad". The VFP
 * instructions are written out (the module itself is built soft-float):
 * only cores with an FPU (Cortex-M4F) can run this service. */
#include <embserve.h>

#define ROUNDS 40u
#define SPIN   300000u /* several 5 ms slices at Renode's default speed */

static volatile uint8_t running;
static uint32_t want[32], got[32];
static uint32_t rounds, bad;

int setup(void)
{
    running = 1;
    return 0;
}

static void load(void)
{
    __asm__ volatile(".fpu fpv4-sp-d16\n vldmia %0, {s0-s31}" : : "r"(want) : "memory");
}

static void store(void)
{
    __asm__ volatile(".fpu fpv4-sp-d16\n vstmia %0, {s0-s31}" : : "r"(got) : "memory");
}

void loop(void)
{
    uint32_t seed = (uint32_t)&rounds;
    while (running && rounds < ROUNDS) {
        for (uint32_t i = 0; i < 32u; i++)
            want[i] = seed * 2654435761u + rounds * 32u + i;
        load();
        for (volatile uint32_t i = 0; i < SPIN && running; i++) {
        }
        store();
        for (uint32_t i = 0; i < 32u; i++)
            bad += got[i] != want[i];
        rounds++;
    }
    embserve_printf("seed %x rounds %u bad %u", (unsigned)seed, (unsigned)rounds, (unsigned)bad);
    while (running)
        embserve_sleep(100);
}

void on_quit(void)
{
    running = 0;
}
