/* Shared between the runtime's own files (not part of the firmware API). */
#ifndef RT_INTERNAL_H
#define RT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime.h"

/* The SDK io struct as the module code lays it out (measured on FITA's
 * binary): key @0, type @32, data pointer @36, data_len @40 (elements). */
typedef struct {
    char     key[32];
    uint8_t  type;
    uint8_t  reserved[3];
    void    *data;
    uint32_t data_len;
} rt_io_t;

#ifdef __arm__
_Static_assert(offsetof(rt_io_t, type) == 32, "io.type offset");
_Static_assert(offsetof(rt_io_t, data) == 36, "io.data offset");
_Static_assert(offsetof(rt_io_t, data_len) == 40, "io.data_len offset");
#endif

/* Calls from service threads (sdk.c). */
int         rt_current_slot(void);                       /* -1 outside service threads */
int         rt_output_index(int slot, const char *key);  /* declared output or -1 */
void        rt_emit_console(int slot, const char *line, uint32_t len);
void        rt_emit_output(int slot, int out_idx, int type, const void *data, uint32_t len);

/* Calls from exception context (fault.c, sched.c), interrupts masked. */
void        rt_thread_faulted(int slot, int tid, const char *msg);
void        rt_thread_fault_registers(int slot, const uint32_t *frame);
int         rt_slot_of_code(uint32_t addr);              /* module whose code holds addr, or -1 */
uint32_t    rt_slot_code_base(int slot);

/* Enable the separate fault handlers (fault.c). */
void        rt_fault_init(void);

/* SDK symbol table for import resolution (sdk.c). */
uint32_t    sdk_resolve(const char *name);

#endif
