/* printf-style formatting for the SDK's embserve_printf_impl.
 *
 * The service passes its variadic arguments as a pointer to the AAPCS
 * argument area (the words after the format string: r1-r3 spilled by the
 * module's printf wrapper, then the caller's stacked arguments).  32-bit
 * arguments take one word; double and long long take two and, as in AAPCS,
 * start at an 8-byte aligned address (a double passed right after the format
 * string sits in r2:r3, so the r1 slot is skipped).
 *
 * Conversions: d i u x X o c s p f F e E g G %, flags - + space 0 #, width and
 * precision (also '*'), length modifiers hh h l ll z j t.
 */
#ifndef RT_FMT_H
#define RT_FMT_H

#include <stdint.h>

/* Writes at most cap-1 characters plus a NUL; returns the length written. */
uint32_t rt_vformat(char *out, uint32_t cap, const char *fmt, const void *va);

#endif
