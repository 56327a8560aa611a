/* First-fit allocator over a static RAM pool for loaded modules and their
 * thread stacks.  Used only from the main thread. */
#ifndef RT_POOL_H
#define RT_POOL_H

#include <stdint.h>

#ifndef RT_POOL_BYTES
#define RT_POOL_BYTES (160u * 1024u)
#endif

void     pool_init(void);
void    *pool_alloc(uint32_t size);     /* 8-aligned, or NULL */
void     pool_free(void *p);
uint32_t pool_free_bytes(void);
uint32_t pool_largest_free(void);

#endif
