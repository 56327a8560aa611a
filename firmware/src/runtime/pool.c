#include "pool.h"

#include <stddef.h>

/* Blocks are laid end to end; each starts with this 8-byte header. */
typedef struct {
    uint32_t size;      /* bytes after the header */
    uint32_t used;
} block_t;

static uint64_t pool_mem[RT_POOL_BYTES / 8];

#define POOL_BASE ((uint8_t *)pool_mem)
#define POOL_END  (POOL_BASE + sizeof(pool_mem))

static block_t *next_block(block_t *b)
{
    return (block_t *)((uint8_t *)(b + 1) + b->size);
}

void pool_init(void)
{
    block_t *b = (block_t *)POOL_BASE;
    b->size = (uint32_t)sizeof(pool_mem) - sizeof(block_t);
    b->used = 0;
}

void *pool_alloc(uint32_t size)
{
    if (size == 0 || size > sizeof(pool_mem))
        return NULL;
    size = (size + 7u) & ~7u;
    for (block_t *b = (block_t *)POOL_BASE; (uint8_t *)b < POOL_END; b = next_block(b)) {
        if (b->used || b->size < size)
            continue;
        if (b->size >= size + sizeof(block_t) + 8u) {
            block_t *rest = (block_t *)((uint8_t *)(b + 1) + size);
            rest->size = b->size - size - (uint32_t)sizeof(block_t);
            rest->used = 0;
            b->size = size;
        }
        b->used = 1;
        return b + 1;
    }
    return NULL;
}

void pool_free(void *p)
{
    if (p == NULL)
        return;
    ((block_t *)p - 1)->used = 0;
    /* Merge every run of free neighbours; the pool holds a handful of blocks. */
    for (block_t *b = (block_t *)POOL_BASE; (uint8_t *)b < POOL_END; b = next_block(b)) {
        if (b->used)
            continue;
        block_t *n = next_block(b);
        while ((uint8_t *)n < POOL_END && !n->used) {
            b->size += (uint32_t)sizeof(block_t) + n->size;
            n = next_block(b);
        }
    }
}

uint32_t pool_free_bytes(void)
{
    uint32_t total = 0;
    for (block_t *b = (block_t *)POOL_BASE; (uint8_t *)b < POOL_END; b = next_block(b))
        if (!b->used)
            total += b->size;
    return total;
}

uint32_t pool_largest_free(void)
{
    uint32_t best = 0;
    for (block_t *b = (block_t *)POOL_BASE; (uint8_t *)b < POOL_END; b = next_block(b))
        if (!b->used && b->size > best)
            best = b->size;
    return best;
}
