/* The firmware's LwM2M client (lwm2m.c, objects.c, coap.c, tlv.c) built
 * natively under AddressSanitizer/UBSan: random requests, and the
 * registration schedule in fake time.
 *
 * Everything below the LwM2M layer is a FAKE: the network, the clock, the
 * sensors, the console and the service runtime (which "installs" any package
 * that starts with '{', its input "setpoint" mapped to Set Point Value, or,
 * when the next byte is '!', to a read-only resource, which install must
 * refuse). The point is memory safety and liveness of the
 * request paths with hostile input, which the target cannot check itself
 * (no MPU, no sanitizer); the real behaviour is tested under QEMU in
 * tests/integration/test_firmware_lwm2m.py.
 *
 * Usage: lwm2m_host_fake [REQUESTS [SEED]]: fuzzing. Prints "<requests> requests,
 * <answers> answers, ..." and exits 0 when every well-formed confirmable
 * request got an answer with its message id and the node still serves a
 * plain read at the end; ASan/UBSan abort on any memory or UB error.
 *        lwm2m_host_fake schedule silent|answer: see schedule().
 *        lwm2m_host_fake inputs: see inputs(). */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootseed.h"
#include "coap.h"
#include "lwm2m.h"
#include "net.h"
#include "runtime/runtime.h"
#include "sensors.h"
#include "shell.h"
#include "systick.h"

/* ------------------------------------------------------------ fakes */

static udp_rx_fn g_rx;
static uint32_t g_now;
static uint8_t g_last[2048];
static uint16_t g_last_len;
static int g_sent;
static jmp_buf g_reset;

int udp_bind(uint16_t port, udp_rx_fn fn)
{
    (void)port;
    g_rx = fn;
    return 0;
}

int udp_send(uint32_t ip, uint16_t dport, uint16_t sport, const uint8_t *data, uint16_t len)
{
    (void)ip;
    (void)dport;
    (void)sport;
    if (len > sizeof(g_last))
        abort();
    memcpy(g_last, data, len);
    g_last_len = len;
    g_sent++;
    return 0;
}

uint32_t net_local_ip(void) { return 0x0A00020Fu; }
void net_poll(void) { g_now += 10; } /* time passes while the caller polls */
int net_parse_ip(const char *s, uint32_t *ip)
{
    unsigned a, b, c, d;
    char extra;
    if (sscanf(s, "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) != 4 || a > 255 || b > 255 || c > 255 || d > 255)
        return -1;
    *ip = a << 24 | b << 16 | c << 8 | d;
    return 0;
}
uint32_t fw_millis(void) { return g_now; }
void board_reset(void) { longjmp(g_reset, 1); }
/* as under Renode's virtual time: nothing differs between boots but what survives in RAM */
uint32_t board_entropy(void) { return 0; }
static float g_temperature = 21.0f;
int sensor_get(const char *name, float *v)
{
    if (strcmp(name, "temperature") != 0)
        return -1;
    *v = g_temperature;
    return 0;
}
void fw_console_line(const char *service_name, const char *line)
{
    if (getenv("FUZZ_VERBOSE"))
        printf("[%s] %s\n", service_name, line);
}

typedef struct {
    int used, state, readonly_input;
} fake_service_t;
static fake_service_t g_services[65536];
static int g_show_inputs; /* "inputs" mode: print what reaches on_input */

int rt_install(int id, const uint8_t *pkg, uint32_t len, char *err, uint32_t errlen)
{
    if (len == 0 || pkg[0] != '{') {
        snprintf(err, errlen, "fake runtime: package of %lu bytes is not JSON", (unsigned long)len);
        return RT_EINVAL;
    }
    g_services[id].used = 1;
    g_services[id].state = RT_STATE_INSTALLED;
    g_services[id].readonly_input = len > 1 && pkg[1] == '!';
    return 0;
}
int rt_activate(int id) { return g_services[id].used ? (g_services[id].state = RT_STATE_RUNNING, 0) : RT_ENOENT; }
int rt_deactivate(int id) { return g_services[id].used ? (g_services[id].state = RT_STATE_STOPPED, 0) : RT_ENOENT; }
void rt_remove(int id) { g_services[id].used = 0; }
int rt_stats(int id, rt_stats_t *out)
{
    if (!g_services[id].used)
        return RT_ENOENT;
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "fake_%d", id);
    out->version = 3;
    out->mem_bytes = 1234;
    out->state = g_services[id].state;
    return 0;
}
const char *rt_strerror(int err) { return err == RT_ENOENT ? "no such service" : "fake error"; }
const char *rt_input_mapping(int id, int n, const char **key)
{
    if (!g_services[id].used || n != 0)
        return NULL;
    *key = "setpoint";
    return g_services[id].readonly_input ? "lwm2m:3303/x/5700" : "lwm2m:3308/x/5900";
}
int rt_input_number(int id, const char *key, double value)
{
    if (!g_services[id].used || strcmp(key, "setpoint") != 0)
        return RT_ENOENT;
    if (value != value)
        return RT_EVALUE;
    if (g_services[id].state != RT_STATE_RUNNING)
        return RT_ESTATE;
    if (g_show_inputs)
        printf("on_input of /9/%d: %s=%g\n", id, key, value);
    return 0;
}

/* ------------------------------------------------------------ driver */

static uint32_t rng = 0xC0FFEEu;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static void deliver(const uint8_t *d, uint16_t len)
{
    g_rx(0x0A000202u, 5683, LWM2M_LOCAL_PORT, d, len);
}

/* Answers the client's last request (a Register) with 2.01 rd/<id>. */
static void accept_registration(void)
{
    coap_msg_t req;
    if (coap_parse(&req, g_last, g_last_len) != COAP_PARSE_OK || req.code != COAP_POST) {
        fprintf(stderr, "expected a Register, the client sent %u bytes\n", g_last_len);
        exit(2);
    }
    coap_pdu_t p;
    uint8_t out[64];
    coap_pdu_init(&p, COAP_ACK, COAP_201_CREATED, req.mid, req.token, req.tkl, NULL, 0);
    coap_pdu_add_str(&p, COAP_OPT_LOCATION_PATH, "rd");
    coap_pdu_add_str(&p, COAP_OPT_LOCATION_PATH, "f0");
    int n = coap_serialize(&p, out, sizeof(out));
    deliver(out, (uint16_t)n);
    if (!lwm2m_is_registered()) {
        fprintf(stderr, "the client did not take the 2.01\n");
        exit(2);
    }
}

static const char *const segments[] = { "1", "3", "4", "9", "15", "3303", "3308", "35003", "0", "1000", "2", "4", "7",
                                        "10", "5700", "27400", "x", "", "65535", "65536", "99999", "01" };
static const char *const known_paths[] = { "/1/0", "/1/0/1", "/1/0/3", "/1/0/8", "/3/0", "/3/0/13", "/3/0/11/0",
                                           "/4/0/4", "/9", "/9/0", "/9/0/2", "/9/0/4", "/9/0/6", "/9/0/10",
                                           "/9/0/11", "/9/1", "/9/1/2", "/9/1/4", "/9/1/10", "/15/0", "/3303",
                                           "/3303/0/5700", "/3303/1", "/3308/0/5900", "/3308/1", "/35003",
                                           "/35003/1/27404" };
static const uint16_t formats[] = { 0, 40, 42, 110, 1542, 11542, 65535 };

static int build_random_request(uint8_t *out, uint16_t mid)
{
    static uint8_t body[1100];
    coap_pdu_t p;
    uint8_t token[8];
    uint8_t tkl = (uint8_t)(rnd() % 9);
    for (int i = 0; i < tkl; i++)
        token[i] = (uint8_t)rnd();
    coap_pdu_init(&p, rnd() % 4 ? COAP_CON : COAP_NON, (uint8_t)(1 + rnd() % 4), mid, token, tkl, body, sizeof(body));
    if (rnd() % 2) {
        /* half the time a path that exists, so writes, executes and observations go deep */
        char path[32];
        snprintf(path, sizeof(path), "%s", known_paths[rnd() % (sizeof(known_paths) / sizeof(known_paths[0]))]);
        for (char *seg = strtok(path, "/"); seg; seg = strtok(NULL, "/"))
            coap_pdu_add_str(&p, COAP_OPT_URI_PATH, seg);
    } else {
        int depth = (int)(rnd() % 6);
        for (int i = 0; i < depth; i++)
            coap_pdu_add_str(&p, COAP_OPT_URI_PATH, segments[rnd() % (sizeof(segments) / sizeof(segments[0]))]);
    }
    if (rnd() % 2)
        coap_pdu_add_uint(&p, COAP_OPT_CONTENT_FORMAT, formats[rnd() % 7]);
    if (rnd() % 3 == 0)
        coap_pdu_add_uint(&p, COAP_OPT_ACCEPT, formats[rnd() % 7]);
    if (rnd() % 8 == 0)
        coap_pdu_add_uint(&p, COAP_OPT_OBSERVE, rnd() % 3);
    if (rnd() % 10 == 0)
        coap_pdu_add_uint(&p, COAP_OPT_BLOCK1, rnd() % 64);
    if (rnd() % 10 == 0)
        coap_pdu_add_uint(&p, COAP_OPT_BLOCK2, rnd() % 64);
    if (rnd() % 6 == 0)
        coap_pdu_add_str(&p, COAP_OPT_URI_QUERY, rnd() % 2 ? "pmin=1" : (rnd() % 2 ? "pmax=x" : "gt=3"));
    uint16_t plen = (uint16_t)(rnd() % 4 == 0 ? 0 : rnd() % (rnd() % 8 == 0 ? 1024 : 40));
    int kind = (int)(rnd() % 3);
    for (uint16_t i = 0; i < plen; i++) {
        if (kind == 0)
            body[i] = (uint8_t)rnd();
        else if (kind == 1)
            body[i] = (uint8_t)("0123456789-.:{}\"ab"[rnd() % 18]);
        else /* TLV-looking bytes */
            body[i] = (uint8_t)(i % 3 == 0 ? (0xC0 | (rnd() & 0x3F)) : rnd() % 16);
    }
    if (plen && rnd() % 3 == 0)
        body[0] = '{';
    p.payload_len = plen;
    return coap_serialize(&p, out, COAP_MAX_DATAGRAM);
}

/* ------------------------------------------------------------ registration schedule */

/* "schedule silent": nobody answers; "schedule answer": a server that accepts
 * everything. Prints every datagram the client sends over 700 s of fake time
 * as "<ms> <code> <mid> <uri>", for the Python test to check the timing. */
static int schedule(int answer)
{
    g_now = 1000;
    lwm2m_init();
    lwm2m_server_add("coap://10.0.2.2:5683", "sched");
    int seen = 0;
    for (g_now = 1000; g_now < 701000; g_now += 10) {
        lwm2m_poll(g_now);
        while (seen < g_sent) {
            seen = g_sent;
            coap_msg_t m;
            if (coap_parse(&m, g_last, g_last_len) != COAP_PARSE_OK)
                return 2;
            char uri[128] = "";
            size_t n = 0;
            for (int i = 0; i < m.n_opts && n < sizeof(uri) - 1; i++)
                if (m.opts[i].num == COAP_OPT_URI_PATH || m.opts[i].num == COAP_OPT_URI_QUERY)
                    n += (size_t)snprintf(uri + n, sizeof(uri) - n, "%c%.*s", m.opts[i].num == COAP_OPT_URI_PATH ? '/' : '?',
                                          m.opts[i].len, (const char *)m.opts[i].val);
            printf("%u %u.%02u %u %s\n", g_now, COAP_CODE_CLASS(m.code), COAP_CODE_DETAIL(m.code), m.mid, uri);
            if (answer && m.type == COAP_CON) {
                coap_pdu_t p;
                uint8_t out[64];
                uint8_t code = m.code == COAP_DELETE ? COAP_202_DELETED
                               : coap_find_option(&m, COAP_OPT_URI_QUERY, NULL) && n >= 3 && memcmp(uri, "/rd?", 4) == 0
                                   ? COAP_201_CREATED
                                   : COAP_204_CHANGED;
                coap_pdu_init(&p, COAP_ACK, code, m.mid, m.token, m.tkl, NULL, 0);
                if (code == COAP_201_CREATED) {
                    coap_pdu_add_str(&p, COAP_OPT_LOCATION_PATH, "rd");
                    coap_pdu_add_str(&p, COAP_OPT_LOCATION_PATH, "f0");
                }
                deliver(out, (uint16_t)coap_serialize(&p, out, sizeof(out)));
            }
        }
    }
    lwm2m_deregister();
    if (seen < g_sent) {
        coap_msg_t m;
        coap_parse(&m, g_last, g_last_len);
        printf("%u %u.%02u %u deregister\n", g_now, COAP_CODE_CLASS(m.code), COAP_CODE_DETAIL(m.code), m.mid);
    }
    return 0;
}

/* One confirmable request to the registered client; prints "<code> <payload>". */
static void request(uint8_t code, const char *path, int cf, const char *payload)
{
    static uint16_t mid = 0x4000;
    coap_pdu_t p;
    uint8_t d[COAP_MAX_DATAGRAM], body[64], tok[1] = { 0x42 };
    char segs[48];
    coap_pdu_init(&p, COAP_CON, code, ++mid, tok, 1, body, sizeof(body));
    snprintf(segs, sizeof(segs), "%s", path);
    for (char *seg = strtok(segs, "/"); seg; seg = strtok(NULL, "/"))
        coap_pdu_add_str(&p, COAP_OPT_URI_PATH, seg);
    if (cf >= 0)
        coap_pdu_add_uint(&p, COAP_OPT_CONTENT_FORMAT, (uint32_t)cf);
    if (code == COAP_GET)
        coap_pdu_add_uint(&p, COAP_OPT_ACCEPT, COAP_CF_TEXT);
    if (payload)
        coap_pdu_set_payload(&p, payload, (uint16_t)strlen(payload));
    deliver(d, (uint16_t)coap_serialize(&p, d, sizeof(d)));
    coap_msg_t r;
    if (coap_parse(&r, g_last, g_last_len) != COAP_PARSE_OK || r.mid != mid) {
        printf("%s: no answer\n", path);
        return;
    }
    printf("%s %u.%02u %.*s\n", path, COAP_CODE_CLASS(r.code), COAP_CODE_DETAIL(r.code), (int)r.payload_len,
           (const char *)r.payload);
}

/* "inputs": the object-store write path of a service input mapped to Set Point
 * Value, over the (fake) runtime: the instance claimed at install, a write
 * refused while the service is not running and delivered while it runs, an
 * install refused for an input mapped to a read-only resource, the instance
 * released with the service. Prints each answer for the Python test. */
static int inputs(void)
{
    g_show_inputs = 1;
    g_now = 1000;
    lwm2m_init();
    lwm2m_server_add("coap://10.0.2.2:5683", "inputs");
    accept_registration();
    request(COAP_POST, "/9", -1, NULL); /* creates /9/0 */
    request(COAP_POST, "/9", -1, NULL); /* and /9/1 */
    request(COAP_PUT, "/9/1/2", COAP_CF_OPAQUE, "{!}");
    request(COAP_POST, "/9/1/4", -1, NULL);
    request(COAP_GET, "/9/1/9", -1, NULL);
    request(COAP_GET, "/35003/2/27404", -1, NULL);
    request(COAP_GET, "/3308/0/5900", -1, NULL); /* nothing claimed for the refused service */
    request(COAP_PUT, "/9/0/2", COAP_CF_OPAQUE, "{}");
    request(COAP_POST, "/9/0/4", -1, NULL);
    request(COAP_PUT, "/3308/0/5900", COAP_CF_TEXT, "23.5");  /* installed, not running */
    request(COAP_POST, "/9/0/10", -1, NULL);
    request(COAP_PUT, "/3308/0/5900", COAP_CF_TEXT, "23.5");
    request(COAP_GET, "/3308/0/5900", -1, NULL);
    request(COAP_PUT, "/3308/0/5900", COAP_CF_TEXT, "nan"); /* a float, but no input value */
    request(COAP_DELETE, "/9/0", -1, NULL);
    request(COAP_GET, "/3308/0/5900", -1, NULL);
    return 0;
}

/* "boots N": N warm boots at the same fake time, each printing its Register's
 * "<boot count> <message id> <token hex>": every boot must pick new ones. */
static int boots(long n)
{
    for (long b = 0; b < n; b++) {
        g_now = 1000;
        lwm2m_init();
        lwm2m_server_add("coap://10.0.2.2:5683", "booter");
        coap_msg_t m;
        if (coap_parse(&m, g_last, g_last_len) != COAP_PARSE_OK || m.code != COAP_POST)
            return 2;
        printf("%lu %u ", (unsigned long)boot_count(), m.mid);
        for (int i = 0; i < m.tkl; i++)
            printf("%02x", m.token[i]);
        printf("\n");
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "schedule") == 0)
        return schedule(strcmp(argv[2], "answer") == 0);
    if (argc > 2 && strcmp(argv[1], "boots") == 0)
        return boots(strtol(argv[2], NULL, 10));
    if (argc > 1 && strcmp(argv[1], "inputs") == 0)
        return inputs();

    long iterations = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
    if (argc > 2)
        rng = ((uint32_t)strtoul(argv[2], NULL, 10) * 2654435761u) ^ 0xC0FFEEu;
    /* static: they must survive the longjmp of a fuzzed Reboot */
    static long requests, answers, resets;
    static long codes[8];
    uint8_t d[COAP_MAX_DATAGRAM];

    if (setjmp(g_reset))
        resets++; /* a fuzzed Reboot execute: boot again */
    g_now += 1000;
    lwm2m_init();
    if (lwm2m_server_add("coap://10.0.2.2:5683", "fuzz") != 0) {
        fprintf(stderr, "server_add refused a valid URI\n");
        return 2;
    }
    accept_registration();

    while (requests < iterations) {
        uint16_t mid = (uint16_t)(0x8000 + requests);
        int n = build_random_request(d, mid);
        if (n < 0)
            continue;
        if (rnd() % 20 == 0) /* a mutated datagram now and then */
            d[rnd() % (uint32_t)n] ^= (uint8_t)(1u << (rnd() % 8));
        int con = (d[0] >> 4 & 3) == COAP_CON;
        int before = g_sent;
        requests++;
        deliver(d, (uint16_t)n);
        if (g_sent > before) {
            coap_msg_t r;
            if (coap_parse(&r, g_last, g_last_len) == COAP_PARSE_OK && r.mid == mid &&
                (r.type == COAP_ACK || r.type == COAP_RST)) {
                answers++;
                codes[COAP_CODE_CLASS(r.code)]++;
            }
        } else if (con && d[0] >> 6 == 1) {
            /* a confirmable request that stayed well-formed must be answered */
            coap_msg_t q;
            if (coap_parse(&q, d, (size_t)n) == COAP_PARSE_OK) {
                fprintf(stderr, "request %ld (mid %u) got no answer\n", requests, mid);
                return 1;
            }
        }
        g_now += rnd() % 50;
        if (rnd() % 16 == 0)
            g_temperature += 0.5f;
        if (rnd() % 64 == 0) {
            float v = (float)(rnd() % 400) / 10.0f;
            fw_service_output((int)(rnd() % 1100), "value", 1, &v, 4, rnd() % 2 ? "lwm2m:3303/x/5700" : "");
        }
        if (rnd() % 512 == 0)
            fw_service_event((int)(rnd() % 1100), RT_STATE_FAULTED, "fake fault at 0xdeadbeef");
        lwm2m_poll(g_now);
        if (!lwm2m_is_registered() && g_last_len && (rnd() % 4 == 0)) {
            coap_msg_t last;
            if (coap_parse(&last, g_last, g_last_len) == COAP_PARSE_OK && last.code == COAP_POST &&
                coap_find_option(&last, COAP_OPT_URI_QUERY, NULL))
                accept_registration();
        }
    }

    /* still serving: a plain read of the device type */
    coap_pdu_t p;
    uint8_t tok[1] = { 0x77 };
    coap_pdu_init(&p, COAP_CON, COAP_GET, 0x1234, tok, 1, NULL, 0);
    coap_pdu_add_str(&p, COAP_OPT_URI_PATH, "3");
    coap_pdu_add_str(&p, COAP_OPT_URI_PATH, "0");
    coap_pdu_add_str(&p, COAP_OPT_URI_PATH, "17");
    coap_pdu_add_uint(&p, COAP_OPT_ACCEPT, COAP_CF_TEXT);
    int n = coap_serialize(&p, d, sizeof(d));
    deliver(d, (uint16_t)n);
    coap_msg_t r;
    if (coap_parse(&r, g_last, g_last_len) != COAP_PARSE_OK || r.code != COAP_205_CONTENT || r.payload_len != 13 ||
        memcmp(r.payload, "embServe Node", 13) != 0) {
        fprintf(stderr, "the final read of /3/0/17 failed\n");
        return 1;
    }
    printf("%ld requests, %ld answers, %ld reboots, codes: 2.xx %ld 4.xx %ld 5.xx %ld\n", requests, answers, resets,
           codes[2], codes[4], codes[5]);
    return 0;
}
