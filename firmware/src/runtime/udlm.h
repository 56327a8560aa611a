/* udynlink module ("UDLM") parser and loader.
 *
 * Image layout (little endian): 24-byte header {"UDLM", u16 num_lot,
 * u16 num_rels, u32 symt_size, u32 code_size, u32 data_size, u32 bss_size},
 * num_rels relocations {u32 target, u32 symbol}, the symbol table, code, data.
 * A relocation target below num_lot is a LOT slot; target num_lot + k is word
 * k of the data section (an initialised pointer).
 *
 * Symbol table: u32 count, then count entries {u32 name_offset | info << 28,
 * u32 value}; names are NUL-terminated strings inside the table, offsets from
 * its start.  info bits 0-1: 0 local, 1 exported, 2 extern, 3 module name
 * (entry 0); bit 2: value is a code offset (else a data/bss offset).  Code
 * values already carry the Thumb bit for functions.
 *
 * Loaded layout in one RAM block: LOT | data | bss | code, each 8-aligned.
 * The module's code finds its LOT through r9, which the export wrappers load
 * by calling the function whose pointer sits at absolute address 0x28.
 */
#ifndef RT_UDLM_H
#define RT_UDLM_H

#include <stdint.h>

#define UDLM_HEADER_SIZE 24
#define UDLM_MAX_LOT     2048u
#define UDLM_MAX_SYMBOLS 2048u
#define UDLM_MAX_SECTION (1u << 20)
#define UDLM_NAME_MAX    32

enum { UDLM_SYM_LOCAL = 0, UDLM_SYM_EXPORTED = 1, UDLM_SYM_EXTERN = 2, UDLM_SYM_NAME = 3 };

typedef struct {
    uint16_t num_lot;
    uint16_t num_rels;
    uint32_t symt_size;
    uint32_t code_size;
    uint32_t data_size;
    uint32_t bss_size;
    uint32_t num_syms;
    const uint8_t *rels;
    const uint8_t *symt;
    const uint8_t *code;
    const uint8_t *data;
} udlm_image_t;

typedef struct {
    uint8_t  kind;          /* UDLM_SYM_* */
    uint8_t  in_code;
    uint32_t value;
    const char *name;       /* "" for local symbols */
} udlm_sym_t;

/* Resolves an extern symbol to its address (Thumb bit set for functions);
 * 0 when the firmware does not provide it. */
typedef uint32_t (*udlm_resolve_fn)(const char *name);

typedef struct {
    uint32_t *lot;
    uint8_t  *data;         /* data_size bytes, then bss_size zeroed bytes */
    uint8_t  *code;
    uint32_t  lot_count;
    uint32_t  data_size;
    uint32_t  bss_size;
    uint32_t  code_size;
    uint32_t  ram_size;     /* bytes of the block in use */
    /* Callable addresses (Thumb bit set) of the exports, 0 when absent. */
    uint32_t  setup, loop, on_input, on_quit;
    char      name[UDLM_NAME_MAX];
} udlm_module_t;

/* Check every header field, offset, symbol and relocation; 0 or -1 with err. */
int udlm_parse(udlm_image_t *img, const uint8_t *buf, uint32_t len, char *err, uint32_t errlen);
int udlm_symbol(const udlm_image_t *img, uint32_t index, udlm_sym_t *out);
/* Bytes of RAM the loaded module needs (LOT + data + bss + code, aligned). */
uint32_t udlm_ram_size(const udlm_image_t *img);
/* Copy code/data into ram (8-aligned, udlm_ram_size bytes), zero bss, fill
 * the LOT and data relocations, resolve imports, find the exports.
 * 0 ok; -1 with err ("unknown import 'name'", "module has no 'loop' export"). */
int udlm_load(const udlm_image_t *img, void *ram, uint32_t ram_len, udlm_resolve_fn resolve,
              udlm_module_t *mod, char *err, uint32_t errlen);

#endif
