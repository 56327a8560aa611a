/* CoAP (RFC 7252) message codec and one endpoint: reliability, dedup, Block1, Observe.
 *
 * The endpoint is transport-agnostic (datagrams go out through a callback and
 * come in through coap_input) and takes the time as an argument, so the same
 * code runs on the board and in host unit tests. Everything runs in the main
 * loop's context; nothing here is re-entrant. */
#ifndef COAP_H
#define COAP_H

#include <stddef.h>
#include <stdint.h>

enum { COAP_CON = 0, COAP_NON = 1, COAP_ACK = 2, COAP_RST = 3 };

#define COAP_CODE(cls, detail) ((uint8_t)(((cls) << 5) | (detail)))
#define COAP_CODE_CLASS(c)     ((uint8_t)(c) >> 5)
#define COAP_CODE_DETAIL(c)    ((uint8_t)(c) & 31u)

enum {
    COAP_EMPTY = 0,
    COAP_GET = 1,
    COAP_POST = 2,
    COAP_PUT = 3,
    COAP_DELETE = 4,
    COAP_201_CREATED = COAP_CODE(2, 1),
    COAP_202_DELETED = COAP_CODE(2, 2),
    COAP_204_CHANGED = COAP_CODE(2, 4),
    COAP_205_CONTENT = COAP_CODE(2, 5),
    COAP_231_CONTINUE = COAP_CODE(2, 31),
    COAP_400_BAD_REQUEST = COAP_CODE(4, 0),
    COAP_402_BAD_OPTION = COAP_CODE(4, 2),
    COAP_404_NOT_FOUND = COAP_CODE(4, 4),
    COAP_405_METHOD_NOT_ALLOWED = COAP_CODE(4, 5),
    COAP_406_NOT_ACCEPTABLE = COAP_CODE(4, 6),
    COAP_408_ENTITY_INCOMPLETE = COAP_CODE(4, 8),
    COAP_413_ENTITY_TOO_LARGE = COAP_CODE(4, 13),
    COAP_415_UNSUPPORTED_FORMAT = COAP_CODE(4, 15),
    COAP_500_INTERNAL_ERROR = COAP_CODE(5, 0),
    COAP_501_NOT_IMPLEMENTED = COAP_CODE(5, 1),
    COAP_503_UNAVAILABLE = COAP_CODE(5, 3),
};

enum {
    COAP_OPT_IF_MATCH = 1,
    COAP_OPT_URI_HOST = 3,
    COAP_OPT_ETAG = 4,
    COAP_OPT_IF_NONE_MATCH = 5,
    COAP_OPT_OBSERVE = 6,
    COAP_OPT_URI_PORT = 7,
    COAP_OPT_LOCATION_PATH = 8,
    COAP_OPT_URI_PATH = 11,
    COAP_OPT_CONTENT_FORMAT = 12,
    COAP_OPT_MAX_AGE = 14,
    COAP_OPT_URI_QUERY = 15,
    COAP_OPT_ACCEPT = 17,
    COAP_OPT_LOCATION_QUERY = 20,
    COAP_OPT_BLOCK2 = 23,
    COAP_OPT_BLOCK1 = 27,
    COAP_OPT_SIZE2 = 28,
    COAP_OPT_PROXY_URI = 35,
    COAP_OPT_PROXY_SCHEME = 39,
    COAP_OPT_SIZE1 = 60,
};

#define COAP_OPT_IS_CRITICAL(n) ((n) & 1u)

/* Content formats used by LwM2M */
#define COAP_CF_TEXT     0
#define COAP_CF_LINK     40
#define COAP_CF_OPAQUE   42
#define COAP_CF_LWM2M_TLV_OLD 1542
#define COAP_CF_LWM2M_TLV 11542
#define COAP_CF_NONE     0xFFFFu /* "no Content-Format / Accept option" */

#define COAP_MAX_TOKEN     8
#define COAP_MAX_OPTIONS   24
#define COAP_MAX_DATAGRAM  1280   /* largest datagram accepted or sent */
#define COAP_MAX_PAYLOAD   1536   /* response body a handler may build (sliced by Block2) */
#define COAP_BLOCK_SZX     6      /* 1024-byte blocks */
#define COAP_BLOCK1_MAX    8192   /* largest request body reassembled from Block1 */
#define COAP_MAX_OBSERVERS 8
#define COAP_OBS_PATH_LEN  24
#define COAP_OBS_CON_EVERY 8          /* at least every 8th notification is confirmable ... */
#define COAP_OBS_CON_MS    60000u     /* ... and the first after a minute of non-confirmable ones */

/* RFC 7252 transmission parameters */
#define COAP_ACK_TIMEOUT_MS   2000u
#define COAP_ACK_RANDOM_MS    1000u  /* ACK_RANDOM_FACTOR 1.5 */
#define COAP_MAX_RETRANSMIT   4u
#define COAP_EXCHANGE_LIFETIME_MS 247000u
#define COAP_NON_LIFETIME_MS  145000u

/* coap_parse results */
enum {
    COAP_PARSE_OK = 0,
    COAP_PARSE_SHORT = -1,      /* fewer than 4 bytes: not even a header */
    COAP_PARSE_VERSION = -2,    /* version is not 1: silently ignored */
    COAP_PARSE_FORMAT = -3,     /* header readable (type, mid valid) but the message is malformed */
    COAP_PARSE_TOO_MANY = -4,   /* more options than COAP_MAX_OPTIONS */
};

typedef struct {
    uint16_t num;
    uint16_t len;
    const uint8_t *val;
} coap_option_t;

/* A received message; option values and payload point into the datagram. */
typedef struct {
    uint8_t type;
    uint8_t code;
    uint16_t mid;
    uint8_t tkl;
    uint8_t token[COAP_MAX_TOKEN];
    uint8_t n_opts;
    coap_option_t opts[COAP_MAX_OPTIONS];
    const uint8_t *payload;
    uint16_t payload_len;
} coap_msg_t;

int coap_parse(coap_msg_t *m, const uint8_t *buf, size_t len);
/* First option `num` after `prev` (NULL = from the start), or NULL. */
const coap_option_t *coap_find_option(const coap_msg_t *m, uint16_t num, const coap_option_t *prev);
/* 1 = present and decoded into *out, 0 = absent, -1 = longer than 4 bytes */
int coap_get_uint(const coap_msg_t *m, uint16_t num, uint32_t *out);
/* Content-Format / Accept value, COAP_CF_NONE when absent or malformed */
uint16_t coap_get_format(const coap_msg_t *m, uint16_t num);
/* First critical option this endpoint does not understand (0 when none). */
uint16_t coap_unknown_critical(const coap_msg_t *m);

/* Block option value <-> (num, more, szx) */
uint32_t coap_block_value(uint32_t num, int more, uint8_t szx);
/* 0 ok, -1 malformed (szx 7 is reserved for BERT) */
int coap_block_parse(uint32_t value, uint32_t *num, int *more, uint8_t *szx);

/* A message being built. Options may be added in any order; they are
 * sorted when serialized. The payload buffer belongs to the caller. */
#define COAP_PDU_OPT_BYTES 320
typedef struct {
    uint8_t type;
    uint8_t code;
    uint16_t mid;
    uint8_t tkl;
    uint8_t token[COAP_MAX_TOKEN];
    uint8_t n_opts;
    uint8_t err;
    struct { uint16_t num; uint16_t off; uint16_t len; } opts[COAP_MAX_OPTIONS];
    uint16_t opt_used;
    uint8_t opt_data[COAP_PDU_OPT_BYTES];
    uint8_t *payload;
    uint16_t payload_len;
    uint16_t payload_cap;
} coap_pdu_t;

void coap_pdu_init(coap_pdu_t *p, uint8_t type, uint8_t code, uint16_t mid,
                   const uint8_t *token, uint8_t tkl, uint8_t *payload_buf, uint16_t payload_cap);
int coap_pdu_add_option(coap_pdu_t *p, uint16_t num, const void *val, uint16_t len);
int coap_pdu_add_uint(coap_pdu_t *p, uint16_t num, uint32_t v);
int coap_pdu_add_str(coap_pdu_t *p, uint16_t num, const char *s);
/* Drops every option `num` (e.g. to replace one). */
void coap_pdu_remove_option(coap_pdu_t *p, uint16_t num);
int coap_pdu_has_option(const coap_pdu_t *p, uint16_t num);
/* Copies into the payload buffer; -1 when it does not fit. */
int coap_pdu_set_payload(coap_pdu_t *p, const void *data, uint16_t len);
/* Appends formatted text to the payload (truncated to the buffer). */
void coap_pdu_printf(coap_pdu_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Length written, or -1 when it does not fit / the pdu overflowed while built. */
int coap_serialize(const coap_pdu_t *p, uint8_t *out, size_t cap);

/* ---- endpoint ---- */

typedef struct {
    uint32_t ip;   /* host byte order */
    uint16_t port;
} coap_peer_t;

/* 0 = handed to the network, <0 = could not send now (retried later for CON) */
typedef int (*coap_tx_fn)(const coap_peer_t *to, const uint8_t *data, uint16_t len);

/* A request from a peer. `body` is the whole request body (reassembled when the
 * peer used Block1). `rsp` arrives initialised (type, mid, token, code 5.00,
 * a payload buffer of COAP_MAX_PAYLOAD bytes); the handler sets the code and
 * adds options and payload. */
typedef void (*coap_request_fn)(const coap_peer_t *from, const coap_msg_t *req,
                                const uint8_t *body, uint32_t body_len, coap_pdu_t *rsp, uint32_t now_ms);

enum { COAP_RESULT_OK = 0, COAP_RESULT_TIMEOUT = -1, COAP_RESULT_RESET = -2, COAP_RESULT_CANCELLED = -3 };
/* Outcome of a request this endpoint sent: rsp is set when result is OK. */
typedef void (*coap_response_fn)(void *arg, int result, const coap_msg_t *rsp);

void coap_init(coap_tx_fn tx, coap_request_fn on_request, uint32_t seed);
void coap_input(const coap_peer_t *from, const uint8_t *data, uint16_t len, uint32_t now_ms);
/* Retransmissions and timeouts. */
void coap_poll(uint32_t now_ms);
uint32_t coap_random(void);

/* Client side: prepares `p` as a request with a fresh message id and token. */
void coap_request_init(coap_pdu_t *p, uint8_t code, int confirmable, uint8_t *payload_buf, uint16_t cap);
/* Sends it and reports the outcome through cb (exactly once, unless cancelled
 * silently with coap_cancel). 0 ok, -1 no free exchange slot / too large. */
int coap_send_request(const coap_peer_t *to, const coap_pdu_t *p, coap_response_fn cb, void *arg, uint32_t now_ms);
/* Forgets every pending exchange whose callback argument is `arg`; callbacks
 * receive COAP_RESULT_CANCELLED when `notify` is set. */
void coap_cancel(void *arg, int notify);
/* Number of requests still waiting for an answer. */
int coap_pending_requests(void);

/* Observe (RFC 7641), server side. The path identifies what is observed;
 * the application decides when to notify and renders the content. */
typedef struct {
    uint8_t used;
    uint8_t tkl;
    uint8_t token[COAP_MAX_TOKEN];
    coap_peer_t peer;
    uint16_t format;          /* content format to notify with */
    uint32_t seq;             /* last Observe value sent */
    uint16_t last_mid;
    uint8_t con_pending;      /* a confirmable notification is in flight */
    uint8_t since_con;        /* notifications sent since the last CON one */
    uint32_t last_ms;         /* time of the last notification (or of the Observe request) */
    uint32_t last_con_ms;     /* time of the last confirmable notification */
    char path[COAP_OBS_PATH_LEN];
} coap_observer_t;

/* Registers (or refreshes, same peer+token) an observation of `req`; returns
 * the Observe value to put in the response, or -1 when the path is too long.
 * A full table gives way: the observer heard from least recently is dropped. */
int32_t coap_observe_add(const coap_peer_t *peer, const coap_msg_t *req, const char *path, uint16_t format, uint32_t now_ms);
/* 1 when an observation was removed */
int coap_observe_remove(const coap_peer_t *peer, const uint8_t *token, uint8_t tkl);
/* Removes observations of `path` and everything below it. */
void coap_observe_remove_path(const char *path);
/* Slot i (0..COAP_MAX_OBSERVERS-1), NULL when unused. */
coap_observer_t *coap_observer(int i);
/* Sends `p` (code, Content-Format and payload set by the caller) as the next
 * notification of `o`. Every COAP_OBS_CON_EVERY-th notification, or the first
 * after COAP_OBS_CON_MS, is confirmable; an unanswered CON notification ends
 * the observation, as does a Reset. 0 ok, <0 not sent. */
int coap_notify(coap_observer_t *o, coap_pdu_t *p, uint32_t now_ms);

/* Counters for diagnostics and tests. */
typedef struct {
    uint32_t rx, tx, retransmits, duplicates, malformed, rst_sent, timeouts, observers_evicted;
} coap_stats_t;
const coap_stats_t *coap_stats(void);

#endif
