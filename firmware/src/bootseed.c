/* Boot counter and seed kept across warm resets; see bootseed.h. */
#include "bootseed.h"

#include "board.h"

#define BOOT_MAGIC 0xB0075EEDu

static struct {
    uint32_t magic;
    uint32_t count;
    uint32_t seed;
    uint32_t check;
} g_boot __attribute__((section(".noinit")));

static uint32_t check_of(uint32_t count, uint32_t seed) { return BOOT_MAGIC ^ (count * 2654435761u) ^ (seed + 0x7F4A7C15u); }

static uint32_t mix(uint32_t x)
{
    /* murmur3's finaliser: every input bit reaches every output bit */
    x ^= x >> 16;
    x *= 0x85EBCA6Bu;
    x ^= x >> 13;
    x *= 0xC2B2AE35u;
    x ^= x >> 16;
    return x;
}

uint32_t boot_seed_next(void)
{
    if (g_boot.magic != BOOT_MAGIC || g_boot.check != check_of(g_boot.count, g_boot.seed)) {
        g_boot.count = 0;
        g_boot.seed = 0;
    }
    g_boot.count++;
    g_boot.seed = mix(g_boot.seed ^ mix(board_entropy() + g_boot.count));
    g_boot.magic = BOOT_MAGIC;
    g_boot.check = check_of(g_boot.count, g_boot.seed);
    return g_boot.seed;
}

uint32_t boot_count(void) { return g_boot.count; }
