/* A seed that differs at every boot, for CoAP message IDs and tokens (RFC 7252 4.4, 5.3.1).
 *
 * Emulators boot identically (Renode's virtual time reads the same timer
 * values every time), and a board after a warm reset may too; a Register that
 * repeats the previous boot's message ID and token is answered from the
 * server's duplicate cache and never registers. So a boot counter and the last
 * seed live in RAM that the reset handler does not clear (.noinit): they
 * survive a warm reset, and each boot mixes them with whatever entropy the
 * board has (board_entropy). After a power cycle the RAM is garbage or zero,
 * the check word fails, and the count starts again from the board's entropy. */
#ifndef BOOTSEED_H
#define BOOTSEED_H

#include <stdint.h>

/* Call once at boot: counts the boot and returns this boot's seed. */
uint32_t boot_seed_next(void);
/* Boots since the RAM was last lost (1 after a power cycle). */
uint32_t boot_count(void);

#endif
