/* Service lifecycle: install (manifest + module), activate, input,
 * deactivate, remove, stats, and the hand-over of service output to the
 * main thread. */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "json.h"
#include "manifest.h"
#include "pool.h"
#include "queue.h"
#include "rt_arch.h"
#include "rt_internal.h"
#include "sched.h"
#include "udlm.h"

#define RT_LOOP_STACK        2048u
#define RT_CALL_STACK        1536u
#define RT_CALL_TIMEOUT_MS   200u   /* on_input / on_quit must return by then */
#define RT_STOP_TIMEOUT_MS   500u   /* loop() must return by then after on_quit */
#define RT_MANIFEST_TOKENS   256u
#define RT_QUEUE_WAIT_MS     1000u  /* a loop thread blocks this long on a full queue */

typedef void (*fn0_t)(void);
typedef int (*setup_fn_t)(void);
typedef void (*fn1_t)(void *);

typedef struct {
    uint8_t          used;
    volatile uint8_t state;
    volatile uint8_t quitting;      /* deactivate in progress: loop's end is expected */
    volatile uint8_t event_pending; /* fw_service_event owed to the main thread */
    volatile uint8_t call_done;
    uint16_t         gen;
    int              inst_id;
    rt_manifest_t    man;
    udlm_module_t    mod;
    void            *block;
    uint32_t         block_size;
    uint8_t         *loop_stack;
    uint8_t         *call_stack;
    uint32_t         call_fn;
    void            *call_arg;
    uint32_t         started_ms;
    uint32_t         load_us;
    uint8_t          loop_ran;
    uint8_t          call_ran;
    char             error[64];
    rt_io_t          io;
    union {
        int32_t i;
        float   f;
    } io_value;
} slot_t;

static slot_t slots[RT_MAX_SERVICES];
static json_tok_t manifest_tokens[RT_MANIFEST_TOKENS];
static rt_manifest_t manifest_tmp;

static int loop_tid(int slot)
{
    return 1 + 2 * slot;
}

static int call_tid(int slot)
{
    return 2 + 2 * slot;
}

static int slot_index(const slot_t *s)
{
    return (int)(s - slots);
}

static slot_t *find(int inst_id)
{
    for (int i = 0; i < RT_MAX_SERVICES; i++)
        if (slots[i].used && slots[i].inst_id == inst_id)
            return &slots[i];
    return NULL;
}

static void set_err(char *err, uint32_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

const char *rt_strerror(int err)
{
    switch (err) {
    case 0: return "ok";
    case RT_ENOENT: return "no such service instance";
    case RT_ESTATE: return "not possible in the service's state";
    case RT_EKEY: return "input not declared by the service";
    case RT_EVALUE: return "input value does not match its type";
    case RT_ENOMEM: return "out of service memory";
    case RT_EFAULT: return "service faulted";
    case RT_EINVAL: return "invalid service package";
    case RT_EBUSY: return "all service slots in use";
    default: return "runtime error";
    }
}

int rt_list(int *ids, int max)
{
    int n = 0;
    for (int i = 0; i < RT_MAX_SERVICES && n < max; i++)
        if (slots[i].used)
            ids[n++] = slots[i].inst_id;
    return n;
}

void rt_init(void)
{
    memset(slots, 0, sizeof(slots));
    pool_init();
    rtq_reset();
    rt_fault_init();
    sched_init();
}

/* ---- calls from service threads and exception context ------------------ */

int rt_current_slot(void)
{
    return sched_owner(sched_current());
}

int rt_output_index(int slot, const char *key)
{
    const rt_manifest_t *m = &slots[slot].man;
    for (int i = 0; i < m->n_out; i++)
        if (strcmp(m->out[i].key, key) == 0)
            return i;
    return -1;
}

/* A loop thread waits for room (the main thread drains the queue); a call
 * thread must not, because the main thread is blocked waiting for it. */
static void push_record(int slot, const rtq_rec_t *r)
{
    uint32_t waited = 0;
    while (rtq_push(r) != 0) {
        if (sched_current() != loop_tid(slot) || waited++ >= RT_QUEUE_WAIT_MS) {
            rtq_count_drop();
            return;
        }
        sched_sleep(1);
    }
}

void rt_emit_console(int slot, const char *line, uint32_t len)
{
    rtq_rec_t r;
    if (len > RTQ_LINE_MAX)
        len = RTQ_LINE_MAX;
    r.kind = RTQ_CONSOLE;
    r.slot = (uint8_t)slot;
    r.gen = slots[slot].gen;
    r.out_idx = 0;
    r.type = 0;
    r.len = (uint16_t)len;
    memcpy(r.u.line, line, len);
    r.u.line[len] = '\0';
    push_record(slot, &r);
}

void rt_emit_output(int slot, int out_idx, int type, const void *data, uint32_t len)
{
    rtq_rec_t r;
    if (len > RTQ_DATA_MAX)
        len = RTQ_DATA_MAX;
    r.kind = RTQ_OUTPUT;
    r.slot = (uint8_t)slot;
    r.gen = slots[slot].gen;
    r.out_idx = (uint8_t)out_idx;
    r.type = (uint8_t)type;
    r.len = (uint16_t)len;
    memcpy(r.u.data, data, len);
    push_record(slot, &r);
}

/* Console note about a fault; callable with interrupts masked (no waiting). */
static void note_fault(int slot, const char *where, const char *msg)
{
    rtq_rec_t r;
    r.kind = RTQ_CONSOLE;
    r.slot = (uint8_t)slot;
    r.gen = slots[slot].gen;
    r.out_idx = 0;
    r.type = 0;
    int n = snprintf(r.u.line, sizeof(r.u.line), "service faulted in %s: %s", where, msg);
    r.len = (uint16_t)(n < 0 ? 0 : n > RTQ_LINE_MAX ? RTQ_LINE_MAX : n);
    if (rtq_push(&r) != 0)
        rtq_count_drop();
}

/* Interrupts are masked (fault handler or PendSV): no waiting here. */
void rt_thread_faulted(int slot, int tid, const char *msg)
{
    if (slot < 0 || slot >= RT_MAX_SERVICES || !slots[slot].used)
        return;
    slot_t *s = &slots[slot];
    sched_kill(tid == loop_tid(slot) ? call_tid(slot) : loop_tid(slot));
    s->state = RT_STATE_FAULTED;
    snprintf(s->error, sizeof(s->error), "%s", msg);
    s->event_pending = 1;
    note_fault(slot, tid == loop_tid(slot) ? "setup/loop" : "on_input/on_quit", msg);
}

int rt_slot_of_code(uint32_t addr)
{
    for (int i = 0; i < RT_MAX_SERVICES; i++) {
        const slot_t *s = &slots[i];
        if (s->used && s->mod.code && addr - (uint32_t)s->mod.code < s->mod.code_size)
            return i;
    }
    return -1;
}

uint32_t rt_slot_code_base(int slot)
{
    return (uint32_t)slots[slot].mod.code;
}

/* The module's export wrappers call this through the pointer at 0x28 with
 * their own PC; the result becomes r9 (the module's LOT). */
uint32_t rt_lot_base_for_pc(uint32_t pc)
{
    int i = rt_slot_of_code(pc);
    return i < 0 ? 0 : (uint32_t)slots[i].mod.lot;
}

/* ---- install ------------------------------------------------------------ */

static void free_slot(slot_t *s)
{
    /* A thread that just returned may not have been switched out for the
     * last time: make sure neither runs again before its stack is freed. */
    int slot = slot_index(s);
    sched_kill(loop_tid(slot));
    sched_kill(call_tid(slot));
    pool_free(s->block);
    uint16_t gen = s->gen;
    memset(s, 0, sizeof(*s));
    s->gen = (uint16_t)(gen + 1);
}

/* Decode the first `want` bytes (or all) of the base64 string token. */
static int decode_service(const json_doc_t *doc, int tok, uint8_t *out, uint32_t cap, uint32_t want,
                          uint32_t *got, char *err, uint32_t errlen)
{
    json_str_iter_t it;
    b64_stream_t st;
    int c;

    json_str_iter_init(&it, doc, tok);
    b64_stream_init(&st, out, cap);
    while ((want == 0 || st.len < want) && (c = json_str_iter_next(&it)) >= 0) {
        if (b64_stream_feed(&st, (uint8_t)c) != B64_OK)
            break;
    }
    if (want == 0 || st.err)
        b64_stream_finish(&st);
    if (st.err) {
        if (err && errlen)
            snprintf(err, errlen, "manifest: 'service' is not valid base64 (%s at character %lu)",
                     base64_strerror(st.err), (unsigned long)(st.nin ? st.nin - 1 : 0));
        return -1;
    }
    *got = st.len;
    return 0;
}

static uint32_t rd32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

int rt_install(int inst_id, const uint8_t *pkg, uint32_t len, char *err, uint32_t errlen)
{
    json_doc_t doc;
    uint8_t head[UDLM_HEADER_SIZE];
    uint32_t got;
    slot_t *s = find(inst_id);
    uint64_t t0 = sched_micros();

    set_err(err, errlen, "");
    if (pkg == NULL || len == 0) {
        set_err(err, errlen, "manifest: package is empty");
        return RT_EINVAL;
    }
    if (s && (s->state == RT_STATE_RUNNING)) {
        set_err(err, errlen, "service is running; deactivate it first");
        return RT_ESTATE;
    }
    if (manifest_parse(&manifest_tmp, &doc, (const char *)pkg, len, manifest_tokens,
                       RT_MANIFEST_TOKENS, err, errlen) != 0)
        return RT_EINVAL;

    /* Size everything from the module header before allocating, so the
     * long-lived block comes first and the scratch copy is freed from the
     * end of the pool. */
    if (decode_service(&doc, manifest_tmp.service_tok, head, sizeof(head), sizeof(head), &got, err, errlen))
        return RT_EINVAL;
    if (got < UDLM_HEADER_SIZE || memcmp(head, "UDLM", 4) != 0) {
        set_err(err, errlen, got < UDLM_HEADER_SIZE ? "module shorter than its header"
                                                    : "module has no UDLM magic");
        return RT_EINVAL;
    }
    uint32_t num_lot = (uint32_t)head[4] | ((uint32_t)head[5] << 8);
    uint32_t sizes[4];
    for (int i = 0; i < 4; i++) {
        sizes[i] = rd32le(head + 8 + 4 * i);
        if (sizes[i] > UDLM_MAX_SECTION) {
            set_err(err, errlen, "module section too large");
            return RT_EINVAL;
        }
    }
    if (num_lot > UDLM_MAX_LOT) {
        set_err(err, errlen, "module LOT too large");
        return RT_EINVAL;
    }
    /* Room for whatever the string decodes to, so a module whose header
     * disagrees with its length gets udlm_parse's precise message. */
    const json_tok_t *svc = &doc.tok[manifest_tmp.service_tok];
    uint32_t image_len = base64_decoded_max(svc->end - svc->start);
    uint32_t ram_len = ((4u * num_lot + 7u) & ~7u) + ((sizes[2] + sizes[3] + 7u) & ~7u) +
                       ((sizes[1] + 7u) & ~7u);
    /* Block layout: module RAM, then the call stack, then the loop stack,
     * each stack with its guard at the bottom.  A frame that jumps over a
     * guard lands in the same service's memory, never in another block or
     * the pool's bookkeeping. */
    uint32_t block_len = ram_len + SCHED_STACK_ALIGN + RT_CALL_STACK + RT_LOOP_STACK;

    /* Replacing an installed (not running) service frees it first. */
    if (s)
        free_slot(s);
    else
        for (int i = 0; i < RT_MAX_SERVICES && !s; i++)
            if (!slots[i].used)
                s = &slots[i];
    if (!s) {
        if (err && errlen)
            snprintf(err, errlen, "no free service slot (at most %d services)", RT_MAX_SERVICES);
        return RT_EBUSY;
    }

    void *block = pool_alloc(block_len);
    uint8_t *image = block ? pool_alloc(image_len) : NULL;
    if (!block || !image) {
        pool_free(block);
        if (err && errlen)
            snprintf(err, errlen, "module needs %lu bytes of RAM, %lu free",
                     (unsigned long)(block_len + image_len), (unsigned long)pool_largest_free());
        return RT_ENOMEM;
    }
    int rc = RT_EINVAL;
    udlm_image_t img;
    if (decode_service(&doc, manifest_tmp.service_tok, image, image_len, 0, &got, err, errlen) == 0 &&
        udlm_parse(&img, image, got, err, errlen) == 0) {
        uint32_t stacks = ((uint32_t)block + ram_len + SCHED_STACK_ALIGN - 1u) & ~(SCHED_STACK_ALIGN - 1u);
        if (udlm_load(&img, block, ram_len, sdk_resolve, &s->mod, err, errlen) == 0) {
            s->call_stack = (uint8_t *)stacks;
            s->loop_stack = (uint8_t *)stacks + RT_CALL_STACK;
            rc = 0;
        }
    }
    pool_free(image);
    if (rc != 0) {
        pool_free(block);
        memset(&s->mod, 0, sizeof(s->mod));
        return rc;
    }

    s->man = manifest_tmp;
    s->block = block;
    s->block_size = block_len;
    s->inst_id = inst_id;
    s->state = RT_STATE_INSTALLED;
    s->error[0] = '\0';
    s->load_us = (uint32_t)(sched_micros() - t0);
    s->used = 1;
    return 0;
}

/* ---- running service code ----------------------------------------------- */

static void loop_thread(void *arg)
{
    slot_t *s = arg;

    int status = ((setup_fn_t)s->mod.setup)();
    if (status < 0) {
        char msg[sizeof(s->error)];
        snprintf(msg, sizeof(msg), "setup() returned %d", status);
        uint32_t p = rt_irq_save();
        s->state = RT_STATE_FAULTED;
        memcpy(s->error, msg, sizeof(msg));
        s->event_pending = 1;
        rt_irq_restore(p);
        return;
    }
    if (!s->quitting)
        ((fn0_t)s->mod.loop)();
    uint32_t p = rt_irq_save();
    if (!s->quitting && s->state == RT_STATE_RUNNING) {
        /* loop() gave up on its own (e.g. no sensor). */
        s->state = RT_STATE_STOPPED;
        strcpy(s->error, "loop() returned before the service was deactivated");
        s->event_pending = 1;
    }
    rt_irq_restore(p);
}

static void call_thread(void *arg)
{
    slot_t *s = arg;
    ((fn1_t)s->call_fn)(s->call_arg);
    s->call_done = 1;
}

/* Main thread: let the services run until cond holds or timeout_ms passes. */
static int wait_for(int (*cond)(const slot_t *), const slot_t *s, uint32_t timeout_ms)
{
    uint32_t t0 = sched_millis();
    while (!cond(s)) {
        if ((uint32_t)(sched_millis() - t0) >= timeout_ms)
            return -1;
        sched_idle();
    }
    return 0;
}

static int call_thread_gone(const slot_t *s)
{
    return !sched_alive(call_tid(slot_index(s)));
}

static int loop_thread_gone(const slot_t *s)
{
    return !sched_alive(loop_tid(slot_index(s)));
}

/* Run fn(arg) in the service's call thread and wait for it. */
static int run_call(slot_t *s, uint32_t fn, void *arg, const char *what)
{
    int slot = slot_index(s);

    s->call_fn = fn;
    s->call_arg = arg;
    s->call_done = 0;
    s->call_ran = 1;
    if (sched_spawn(call_tid(slot), call_thread, s, s->call_stack, RT_CALL_STACK, slot) != 0)
        return RT_ENOMEM;
    if (wait_for(call_thread_gone, s, RT_CALL_TIMEOUT_MS) != 0) {
        uint32_t p = rt_irq_save();
        sched_kill(call_tid(slot));
        sched_kill(loop_tid(slot));
        s->state = RT_STATE_FAULTED;
        snprintf(s->error, sizeof(s->error), "%s did not return within %u ms", what,
                 (unsigned)RT_CALL_TIMEOUT_MS);
        s->event_pending = 1;
        note_fault(slot, "on_input/on_quit", s->error);
        rt_irq_restore(p);
        return RT_EFAULT;
    }
    return s->call_done && s->state != RT_STATE_FAULTED ? 0 : RT_EFAULT;
}

int rt_activate(int inst_id)
{
    slot_t *s = find(inst_id);
    if (!s)
        return RT_ENOENT;
    if (s->state != RT_STATE_INSTALLED && s->state != RT_STATE_STOPPED)
        return RT_ESTATE;
    int slot = slot_index(s);
    if (sched_alive(loop_tid(slot)) || sched_alive(call_tid(slot)))
        return RT_ESTATE;
    s->quitting = 0;
    s->error[0] = '\0';
    s->started_ms = sched_millis();
    s->state = RT_STATE_RUNNING;
    s->loop_ran = 1;
    if (sched_spawn(loop_tid(slot), loop_thread, s, s->loop_stack, RT_LOOP_STACK, slot) != 0) {
        s->state = RT_STATE_STOPPED;
        return RT_ENOMEM;
    }
    return 0;
}

int rt_deactivate(int inst_id)
{
    slot_t *s = find(inst_id);
    if (!s)
        return RT_ENOENT;
    if (s->state != RT_STATE_RUNNING)
        return RT_ESTATE;
    int slot = slot_index(s);

    s->quitting = 1;
    if (s->mod.on_quit && run_call(s, s->mod.on_quit, NULL, "on_quit()") != 0)
        return RT_EFAULT;
    /* The loop usually sleeps between readings: end the sleep so it sees
     * its cleared flag now rather than a period later. */
    sched_wake(loop_tid(slot));
    if (wait_for(loop_thread_gone, s, RT_STOP_TIMEOUT_MS) != 0)
        sched_kill(loop_tid(slot));     /* ignores on_quit: stop it anyway */
    if (s->state == RT_STATE_FAULTED)
        return RT_EFAULT;
    s->state = RT_STATE_STOPPED;
    return 0;
}

void rt_remove(int inst_id)
{
    slot_t *s = find(inst_id);
    if (!s)
        return;
    if (s->state == RT_STATE_RUNNING)
        rt_deactivate(inst_id);
    int slot = slot_index(s);
    sched_kill(loop_tid(slot));
    sched_kill(call_tid(slot));
    free_slot(s);
}

static int parse_int(const char *t, int32_t *out)
{
    char *end;
    if (*t == '\0' || *t == ' ')
        return -1;
    long long v = strtoll(t, &end, 10);
    if (*end != '\0' || v < INT32_MIN || v > INT32_MAX)
        return -1;
    *out = (int32_t)v;
    return 0;
}

static int parse_float(const char *t, float *out)
{
    char *end;
    if (*t == '\0' || *t == ' ')
        return -1;
    float v = strtof(t, &end);
    if (*end != '\0' || v != v || v > 3.4028235e38f || v < -3.4028235e38f)
        return -1;
    *out = v;
    return 0;
}

static const rt_io_decl_t *input_decl(const slot_t *s, const char *key)
{
    for (int i = 0; key && i < s->man.n_in; i++)
        if (strcmp(s->man.in[i].key, key) == 0)
            return &s->man.in[i];
    return NULL;
}

/* on_input with s->io_value, which holds a value of decl's type. */
static int deliver_input(slot_t *s, const rt_io_decl_t *decl)
{
    if (s->state != RT_STATE_RUNNING)
        return RT_ESTATE;
    if (!s->mod.on_input)
        return 0;
    memset(&s->io, 0, sizeof(s->io));
    strncpy(s->io.key, decl->key, sizeof(s->io.key) - 1);
    s->io.type = decl->type;
    s->io.data = &s->io_value;
    s->io.data_len = 1;     /* one value, as the SDK counts them */
    return run_call(s, s->mod.on_input, &s->io, "on_input()");
}

int rt_input(int inst_id, const char *key, const char *value_text)
{
    slot_t *s = find(inst_id);
    if (!s)
        return RT_ENOENT;
    const rt_io_decl_t *decl = input_decl(s, key);
    if (!decl || value_text == NULL)
        return RT_EKEY;
    if (decl->type == RT_TYPE_INT ? parse_int(value_text, &s->io_value.i)
                                  : parse_float(value_text, &s->io_value.f))
        return RT_EVALUE;
    return deliver_input(s, decl);
}

int rt_input_number(int inst_id, const char *key, double value)
{
    slot_t *s = find(inst_id);
    if (!s)
        return RT_ENOENT;
    const rt_io_decl_t *decl = input_decl(s, key);
    if (!decl)
        return RT_EKEY;
    if (manifest_input_number(decl, value, &s->io_value.i, &s->io_value.f) != 0)
        return RT_EVALUE;
    return deliver_input(s, decl);
}

const char *rt_input_mapping(int inst_id, int n, const char **key)
{
    const slot_t *s = find(inst_id);
    if (!s || n < 0)
        return NULL;
    for (int i = 0; i < s->man.n_in; i++) {
        if (n < s->man.in[i].nmap) {
            *key = s->man.in[i].key;
            return s->man.in[i].mapping[n];
        }
        n -= s->man.in[i].nmap;
    }
    return NULL;
}

int rt_stats(int inst_id, rt_stats_t *out)
{
    slot_t *s = find(inst_id);
    memset(out, 0, sizeof(*out));
    if (!s)
        return RT_ENOENT;
    int slot = slot_index(s);
    snprintf(out->name, sizeof(out->name), "%s", s->man.name);
    out->version = s->man.version;
    out->state = s->state;
    snprintf(out->error, sizeof(out->error), "%s", s->error);
    out->mem_bytes = s->block_size;
    if (s->state == RT_STATE_RUNNING) {
        out->cpu_permille = sched_cpu_permille(loop_tid(slot)) + sched_cpu_permille(call_tid(slot));
        out->uptime_s = (sched_millis() - s->started_ms) / 1000u;
    }
    return 0;
}

int rt_diag(int inst_id, rt_diag_t *out)
{
    slot_t *s = find(inst_id);
    memset(out, 0, sizeof(*out));
    if (!s)
        return RT_ENOENT;
    out->load_us = s->load_us;
    out->code_bytes = s->mod.code_size;
    out->lot_bytes = 4u * s->mod.lot_count;
    out->data_bytes = s->mod.data_size;
    out->bss_bytes = s->mod.bss_size;
    out->loop_stack_size = RT_LOOP_STACK - SCHED_GUARD_BYTES;
    out->call_stack_size = RT_CALL_STACK - SCHED_GUARD_BYTES;
    if (s->loop_ran)
        out->loop_stack_peak = sched_stack_peak(s->loop_stack, RT_LOOP_STACK);
    if (s->call_ran)
        out->call_stack_peak = sched_stack_peak(s->call_stack, RT_CALL_STACK);
    return 0;
}

uint32_t rt_switch_count(void)
{
    return sched_switch_count();
}

uint64_t rt_micros(void)
{
    return sched_micros();
}

void rt_poll(void)
{
    static uint32_t dropped_reported;
    rtq_rec_t r;

    while (rtq_pop(&r)) {
        slot_t *s = &slots[r.slot];
        if (!s->used || s->gen != r.gen)
            continue;       /* the service was removed meanwhile */
        if (r.kind == RTQ_CONSOLE) {
            fw_console_line(s->man.name, r.u.line);
        } else if (r.kind == RTQ_OUTPUT && r.out_idx < s->man.n_out) {
            const rt_io_decl_t *d = &s->man.out[r.out_idx];
            if (d->nmap == 0)
                fw_service_output(s->inst_id, d->key, r.type, r.u.data, r.len, "");
            for (int m = 0; m < d->nmap; m++)
                fw_service_output(s->inst_id, d->key, r.type, r.u.data, r.len, d->mapping[m]);
        }
    }
    uint32_t dropped = rtq_dropped();
    if (dropped != dropped_reported) {
        char line[64];
        snprintf(line, sizeof(line), "%lu service console lines/outputs dropped (queue full)",
                 (unsigned long)(dropped - dropped_reported));
        dropped_reported = dropped;
        fw_console_line("runtime", line);
    }
    for (int i = 0; i < RT_MAX_SERVICES; i++) {
        slot_t *s = &slots[i];
        if (s->used && s->event_pending) {
            s->event_pending = 0;
            fw_service_event(s->inst_id, s->state, s->error);
        }
    }
}
