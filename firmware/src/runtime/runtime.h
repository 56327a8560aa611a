/* embServe service runtime: installs udynlink service packages (service.json),
 * runs each service's loop() in its own preemptive thread and implements the
 * SDK API.  All rt_* calls come from the main thread. */
#ifndef RUNTIME_H
#define RUNTIME_H

#include <stdint.h>

#define RT_MAX_SERVICES 4

void rt_init(void);
int  rt_install(int inst_id, const uint8_t *pkg, uint32_t len, char *err, uint32_t errlen); /* parse manifest + load; 0 ok; <0 with message */
int  rt_activate(int inst_id);     /* setup() then loop() in its own thread */
int  rt_deactivate(int inst_id);   /* on_quit(); loop returns */
void rt_remove(int inst_id);       /* stop + free */
int  rt_input(int inst_id, const char *key, const char *value_text);  /* calls on_input with the io struct */
int  rt_input_number(int inst_id, const char *key, double value);     /* the same with a number (a server's write), in the input's type */
const char *rt_input_mapping(int inst_id, int n, const char **key);   /* n-th (input, mapping) pair, e.g. "lwm2m:3308/x/5900"; NULL past the last */
typedef struct { char name[32]; int version; uint32_t cpu_permille; uint32_t mem_bytes; uint32_t uptime_s; char error[64]; int state; } rt_stats_t;  /* state: 0 none 1 installed 2 running 3 stopped 4 faulted */
int  rt_stats(int inst_id, rt_stats_t *out);
void rt_poll(void);                /* main loop: delivers queued outputs/console lines via the callbacks below, in main-thread context */
void sched_tick(void);             /* called by SysTick_Handler every 1 ms */
void sched_idle(void);             /* main loop calls when it has no work: run ready services or WFI */
uint32_t rt_lot_base_for_pc(uint32_t pc); /* its address | 1 is stored at vector-table offset 0x28 */
/* callbacks implemented by the rest of the firmware (FW-B implements fw_service_output, FW-A fw_console_line) */
void fw_service_output(int inst_id, const char *key, int type, const void *data, uint32_t len, const char *mapping); /* mapping like "lwm2m:3303/x/5700" or "" */
void fw_service_event(int inst_id, int state, const char *error);   /* e.g. faulted: FW-B records it in /9 update result and 35003 error */
void fw_console_line(const char *service_name, const char *line);   /* FW-A prints "[name] line" on the console */

enum { RT_STATE_NONE = 0, RT_STATE_INSTALLED, RT_STATE_RUNNING, RT_STATE_STOPPED, RT_STATE_FAULTED };

/* Details of the callbacks (in addition to the fixed interface above):
 * - fw_service_output: type 0 = int32, 1 = float32; data holds len bytes
 *   (4 per value, the SDK's data_len is a count of values).  Called once per
 *   data_model_mapping of the output, or once with "" when it has none.
 * - fw_service_event: asynchronous changes only — a fault (state 4, error
 *   says what and where) or a loop() that returned on its own (state 3).
 * Error returns of rt_activate/rt_deactivate/rt_input are negative
 * RT_E* codes; rt_strerror() names them. */
enum {
    RT_ENOENT = -1,     /* no service installed with this instance id */
    RT_ESTATE = -2,     /* not possible in the service's current state */
    RT_EKEY = -3,       /* input key not declared in the manifest */
    RT_EVALUE = -4,     /* input value does not parse as the declared type */
    RT_ENOMEM = -5,     /* no room in the module pool / thread table */
    RT_EFAULT = -6,     /* the service faulted while handling the call */
    RT_EINVAL = -7,     /* bad manifest or module (rt_install's message says why) */
    RT_EBUSY = -8,      /* all service slots are in use */
};
const char *rt_strerror(int err);
/* Instance ids of the installed services (at most max); returns how many. */
int rt_list(int *ids, int max);
/* Diagnostics beyond rt_stats_t (shell "embserve service list", benchmarks). */
typedef struct {
    uint32_t load_us;           /* rt_install: parse, decode, load */
    uint32_t code_bytes, lot_bytes, data_bytes, bss_bytes;
    uint32_t loop_stack_peak, loop_stack_size;  /* peak 0 until the thread ran */
    uint32_t call_stack_peak, call_stack_size;
} rt_diag_t;
int rt_diag(int inst_id, rt_diag_t *out);
/* Context switches so far and the runtime's microsecond clock. */
uint32_t rt_switch_count(void);
uint64_t rt_micros(void);

#endif
