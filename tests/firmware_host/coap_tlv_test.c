/* Host unit tests of the firmware's CoAP endpoint and TLV codec (firmware/src/coap.c, tlv.c).
 *
 * Built natively by tests/unit/test_firmware_coap_tlv.py (with sanitizers when
 * available). The transport is a fake that records datagrams, and time is
 * passed explicitly, so retransmission schedules are checked exactly.
 *
 * Usage: coap_tlv_test            run every test, print a summary
 *        coap_tlv_test tlv-hex    print TLV encodings for the Python cross-check */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coap.h"
#include "tlv.h"

static int failures, checks;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        checks++;                                                                    \
        if (!(cond)) {                                                               \
            failures++;                                                              \
            fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__,     \
                    __func__, #cond);                                                \
        }                                                                            \
    } while (0)

#define CHECK_EQ(a, b)                                                                        \
    do {                                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                                   \
        checks++;                                                                             \
        if (a_ != b_) {                                                                       \
            failures++;                                                                       \
            fprintf(stderr, "%s:%d: %s: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, \
                    __func__, #a, a_, #b, b_);                                                \
        }                                                                                     \
    } while (0)

/* ------------------------------------------------------------ fake transport */

#define MAX_SENT 64
typedef struct {
    coap_peer_t to;
    uint16_t len;
    uint8_t data[COAP_MAX_DATAGRAM];
} sent_t;

static sent_t sent[MAX_SENT];
static int n_sent;
static int tx_fail_next; /* number of upcoming sends the fake network refuses */

static int fake_tx(const coap_peer_t *to, const uint8_t *data, uint16_t len)
{
    if (tx_fail_next > 0) {
        tx_fail_next--;
        return -3;
    }
    if (n_sent < MAX_SENT) {
        sent[n_sent].to = *to;
        sent[n_sent].len = len;
        memcpy(sent[n_sent].data, data, len);
        n_sent++;
    }
    return 0;
}

static coap_msg_t last_sent(void)
{
    coap_msg_t m;
    memset(&m, 0, sizeof(m));
    if (n_sent > 0)
        CHECK_EQ(coap_parse(&m, sent[n_sent - 1].data, sent[n_sent - 1].len), COAP_PARSE_OK);
    return m;
}

/* The request handler records what it saw and answers 2.05 "ok:<body length>". */
static int handler_calls;
static uint8_t handler_body[COAP_BLOCK1_MAX];
static uint32_t handler_body_len;

static void fake_handler(const coap_peer_t *from, const coap_msg_t *req, const uint8_t *body, uint32_t body_len,
                         coap_pdu_t *rsp, uint32_t now)
{
    (void)from;
    (void)req;
    (void)now;
    handler_calls++;
    handler_body_len = body_len;
    if (body_len)
        memcpy(handler_body, body, body_len);
    rsp->code = COAP_205_CONTENT;
    coap_pdu_printf(rsp, "ok:%lu", (unsigned long)body_len);
}

/* Handler that returns a large body, for Block2. */
static void big_handler(const coap_peer_t *from, const coap_msg_t *req, const uint8_t *body, uint32_t body_len,
                        coap_pdu_t *rsp, uint32_t now)
{
    (void)from;
    (void)req;
    (void)body;
    (void)body_len;
    (void)now;
    handler_calls++;
    rsp->code = COAP_205_CONTENT;
    for (int i = 0; i < 1500; i++)
        rsp->payload[i] = (uint8_t)('A' + i % 26);
    rsp->payload_len = 1500;
}

static const coap_peer_t PEER = { 0x0A000202u, 5683 };
static const coap_peer_t OTHER = { 0x0A000203u, 5683 };

static void reset(coap_request_fn handler)
{
    coap_init(fake_tx, handler, 12345);
    n_sent = 0;
    handler_calls = 0;
    handler_body_len = 0;
    tx_fail_next = 0;
}

/* Builds a request datagram; returns its length. */
static int build_request(uint8_t *out, uint8_t type, uint8_t code, uint16_t mid, const char *path, const void *payload,
                         uint16_t plen, uint32_t block1, int with_block1)
{
    coap_pdu_t p;
    uint8_t body[COAP_MAX_DATAGRAM];
    uint8_t token[2] = { 0xAB, (uint8_t)mid };
    coap_pdu_init(&p, type, code, mid, token, 2, body, sizeof(body));
    char seg[32];
    const char *s = path;
    while (*s) {
        while (*s == '/')
            s++;
        size_t n = strcspn(s, "/");
        if (n == 0)
            break;
        memcpy(seg, s, n);
        seg[n] = '\0';
        coap_pdu_add_str(&p, COAP_OPT_URI_PATH, seg);
        s += n;
    }
    if (with_block1)
        coap_pdu_add_uint(&p, COAP_OPT_BLOCK1, block1);
    if (plen)
        coap_pdu_set_payload(&p, payload, plen);
    return coap_serialize(&p, out, COAP_MAX_DATAGRAM);
}

/* ------------------------------------------------------------ codec tests */

static void test_parse_header_and_options(void)
{
    /* CON GET mid 0x1234 token 0xA1A2, Uri-Path "3","0","17", Accept 0 */
    const uint8_t msg[] = { 0x42, 0x01, 0x12, 0x34, 0xA1, 0xA2, 0xB1, '3', 0x01, '0', 0x02, '1', '7', 0x61, 0x00 };
    coap_msg_t m;
    CHECK_EQ(coap_parse(&m, msg, sizeof(msg)), COAP_PARSE_OK);
    CHECK_EQ(m.type, COAP_CON);
    CHECK_EQ(m.code, COAP_GET);
    CHECK_EQ(m.mid, 0x1234);
    CHECK_EQ(m.tkl, 2);
    CHECK_EQ(m.token[1], 0xA2);
    CHECK_EQ(m.n_opts, 4);
    CHECK_EQ(m.opts[2].num, COAP_OPT_URI_PATH);
    CHECK_EQ(m.opts[2].len, 2);
    CHECK_EQ(m.opts[3].num, COAP_OPT_ACCEPT);
    CHECK_EQ(coap_get_format(&m, COAP_OPT_ACCEPT), 0);
    CHECK_EQ(coap_get_format(&m, COAP_OPT_CONTENT_FORMAT), COAP_CF_NONE);
    CHECK(m.payload == NULL);
}

static void test_parse_extended_delta_and_length(void)
{
    /* option 60 (Size1): delta in the 13 form; option 2048: delta in the 14 form; a 20-byte value: length in the 13 form */
    uint8_t msg[64] = { 0x50, 0x02, 0x00, 0x01 };
    size_t n = 4;
    msg[n++] = 0xD1; msg[n++] = 60 - 13; msg[n++] = 0x2A;             /* Size1 = 42 */
    msg[n++] = 0xED; msg[n++] = (2048 - 60 - 269) >> 8; msg[n++] = (uint8_t)(2048 - 60 - 269); msg[n++] = 20 - 13;
    for (int i = 0; i < 20; i++)
        msg[n++] = (uint8_t)i;
    msg[n++] = 0xFF;
    msg[n++] = 'x';
    coap_msg_t m;
    CHECK_EQ(coap_parse(&m, msg, n), COAP_PARSE_OK);
    CHECK_EQ(m.type, COAP_NON);
    CHECK_EQ(m.n_opts, 2);
    CHECK_EQ(m.opts[0].num, 60);
    CHECK_EQ(m.opts[1].num, 2048);
    CHECK_EQ(m.opts[1].len, 20);
    CHECK_EQ(m.opts[1].val[19], 19);
    CHECK_EQ(m.payload_len, 1);
    uint32_t size1 = 0;
    CHECK_EQ(coap_get_uint(&m, COAP_OPT_SIZE1, &size1), 1);
    CHECK_EQ(size1, 42);
    /* 2048 is even (elective): ignored, so no unknown critical option */
    CHECK_EQ(coap_unknown_critical(&m), 0);
}

static void test_parse_rejects_malformed(void)
{
    coap_msg_t m;
    const uint8_t short_msg[] = { 0x40, 0x01, 0x00 };
    CHECK_EQ(coap_parse(&m, short_msg, sizeof(short_msg)), COAP_PARSE_SHORT);
    const uint8_t v2[] = { 0x80, 0x01, 0x00, 0x01 };
    CHECK_EQ(coap_parse(&m, v2, sizeof(v2)), COAP_PARSE_VERSION);
    const uint8_t tkl9[] = { 0x49, 0x01, 0x00, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
    CHECK_EQ(coap_parse(&m, tkl9, sizeof(tkl9)), COAP_PARSE_FORMAT);
    const uint8_t short_token[] = { 0x44, 0x01, 0x00, 0x01, 1, 2 };
    CHECK_EQ(coap_parse(&m, short_token, sizeof(short_token)), COAP_PARSE_FORMAT);
    const uint8_t marker_no_payload[] = { 0x40, 0x01, 0x00, 0x01, 0xFF };
    CHECK_EQ(coap_parse(&m, marker_no_payload, sizeof(marker_no_payload)), COAP_PARSE_FORMAT);
    const uint8_t delta15[] = { 0x40, 0x01, 0x00, 0x01, 0xF1, 0x00 };
    CHECK_EQ(coap_parse(&m, delta15, sizeof(delta15)), COAP_PARSE_FORMAT);
    const uint8_t len15[] = { 0x40, 0x01, 0x00, 0x01, 0x1F };
    CHECK_EQ(coap_parse(&m, len15, sizeof(len15)), COAP_PARSE_FORMAT);
    const uint8_t value_past_end[] = { 0x40, 0x01, 0x00, 0x01, 0xB5, 'a', 'b' };
    CHECK_EQ(coap_parse(&m, value_past_end, sizeof(value_past_end)), COAP_PARSE_FORMAT);
    const uint8_t ext_missing[] = { 0x40, 0x01, 0x00, 0x01, 0xE0, 0x01 };
    CHECK_EQ(coap_parse(&m, ext_missing, sizeof(ext_missing)), COAP_PARSE_FORMAT);
    /* option number past 65535: 65000 then delta 65000 again */
    const uint8_t too_big[] = { 0x40, 0x01, 0x00, 0x01, 0xE0, 0xFC, 0xDB, 0xE0, 0xFC, 0xDB };
    CHECK_EQ(coap_parse(&m, too_big, sizeof(too_big)), COAP_PARSE_FORMAT);
    const uint8_t empty_with_token[] = { 0x41, 0x00, 0x00, 0x01, 0x00 };
    CHECK_EQ(coap_parse(&m, empty_with_token, sizeof(empty_with_token)), COAP_PARSE_FORMAT);
    const uint8_t empty_with_bytes[] = { 0x60, 0x00, 0x00, 0x01, 0xFF, 0x00 };
    CHECK_EQ(coap_parse(&m, empty_with_bytes, sizeof(empty_with_bytes)), COAP_PARSE_FORMAT);
    /* one option more than the table holds: If-Match (1) once, then repeated with delta 0 */
    uint8_t many[4 + 2 * (COAP_MAX_OPTIONS + 1)] = { 0x40, 0x01, 0x00, 0x01 };
    for (int i = 0; i <= COAP_MAX_OPTIONS; i++) {
        many[4 + 2 * i] = i ? 0x01 : 0x11;
        many[5 + 2 * i] = (uint8_t)i;
    }
    CHECK_EQ(coap_parse(&m, many, sizeof(many)), COAP_PARSE_TOO_MANY);
}

static void test_unknown_critical_options(void)
{
    coap_msg_t m;
    /* option 9 is unassigned and odd: critical */
    const uint8_t crit[] = { 0x40, 0x01, 0x00, 0x01, 0x91, 0x00 };
    CHECK_EQ(coap_parse(&m, crit, sizeof(crit)), COAP_PARSE_OK);
    CHECK_EQ(coap_unknown_critical(&m), 9);
    /* If-Match is critical and not supported here */
    const uint8_t if_match[] = { 0x40, 0x03, 0x00, 0x01, 0x11, 0x00 };
    CHECK_EQ(coap_parse(&m, if_match, sizeof(if_match)), COAP_PARSE_OK);
    CHECK_EQ(coap_unknown_critical(&m), COAP_OPT_IF_MATCH);
    /* Accept with a 3-byte value is out of its length range: unrecognised */
    const uint8_t long_accept[] = { 0x40, 0x01, 0x00, 0x01, 0xD3, 17 - 13, 1, 2, 3 };
    CHECK_EQ(coap_parse(&m, long_accept, sizeof(long_accept)), COAP_PARSE_OK);
    CHECK_EQ(coap_unknown_critical(&m), COAP_OPT_ACCEPT);
    /* an unknown elective option (even) is fine */
    const uint8_t elective[] = { 0x40, 0x01, 0x00, 0x01, 0xA1, 0x00 };
    CHECK_EQ(coap_parse(&m, elective, sizeof(elective)), COAP_PARSE_OK);
    CHECK_EQ(coap_unknown_critical(&m), 0);
}

static void test_serialize_sorts_options_and_round_trips(void)
{
    coap_pdu_t p;
    uint8_t body[16];
    uint8_t out[128];
    const uint8_t token[3] = { 1, 2, 3 };
    coap_pdu_init(&p, COAP_CON, COAP_POST, 0xBEEF, token, 3, body, sizeof(body));
    coap_pdu_add_uint(&p, COAP_OPT_CONTENT_FORMAT, COAP_CF_LINK);
    coap_pdu_add_str(&p, COAP_OPT_URI_PATH, "rd");
    coap_pdu_add_str(&p, COAP_OPT_URI_QUERY, "ep=node1");
    coap_pdu_add_str(&p, COAP_OPT_URI_QUERY, "lt=300");
    coap_pdu_add_uint(&p, COAP_OPT_SIZE1, 70000);
    coap_pdu_add_uint(&p, COAP_OPT_OBSERVE, 0);
    coap_pdu_set_payload(&p, "</3/0>", 6);
    int n = coap_serialize(&p, out, sizeof(out));
    CHECK(n > 0);
    coap_msg_t m;
    CHECK_EQ(coap_parse(&m, out, (size_t)n), COAP_PARSE_OK);
    CHECK_EQ(m.mid, 0xBEEF);
    CHECK_EQ(m.tkl, 3);
    CHECK_EQ(m.n_opts, 6);
    CHECK_EQ(m.opts[0].num, COAP_OPT_OBSERVE);
    CHECK_EQ(m.opts[0].len, 0); /* 0 is the empty value */
    CHECK_EQ(m.opts[1].num, COAP_OPT_URI_PATH);
    CHECK_EQ(m.opts[2].num, COAP_OPT_CONTENT_FORMAT);
    CHECK_EQ(m.opts[3].num, COAP_OPT_URI_QUERY);
    CHECK(memcmp(m.opts[3].val, "ep=node1", 8) == 0); /* repeated options keep their order */
    CHECK(memcmp(m.opts[4].val, "lt=300", 6) == 0);
    CHECK_EQ(m.opts[5].num, COAP_OPT_SIZE1);
    uint32_t v;
    CHECK_EQ(coap_get_uint(&m, COAP_OPT_SIZE1, &v), 1);
    CHECK_EQ(v, 70000);
    CHECK_EQ(m.payload_len, 6);
    /* too small an output buffer is an error, not an overflow */
    CHECK_EQ(coap_serialize(&p, out, 10), -1);
    /* payload too large for its buffer */
    CHECK_EQ(coap_pdu_set_payload(&p, out, sizeof(body) + 1), -1);
}

static void test_block_option_values(void)
{
    uint32_t num;
    int more;
    uint8_t szx;
    CHECK_EQ(coap_block_value(2, 1, 6), 0x2E);
    CHECK_EQ(coap_block_parse(0x2E, &num, &more, &szx), 0);
    CHECK_EQ(num, 2);
    CHECK_EQ(more, 1);
    CHECK_EQ(szx, 6);
    CHECK_EQ(coap_block_parse(0x07, &num, &more, &szx), -1); /* BERT is TCP-only */
}

/* ------------------------------------------------------------ endpoint: server side */

static void test_con_request_gets_piggybacked_response(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    reset(fake_handler);
    int n = build_request(d, COAP_CON, COAP_GET, 0x0101, "/3/0", NULL, 0, 0, 0);
    coap_input(&PEER, d, (uint16_t)n, 1000);
    CHECK_EQ(handler_calls, 1);
    CHECK_EQ(n_sent, 1);
    coap_msg_t r = last_sent();
    CHECK_EQ(r.type, COAP_ACK);
    CHECK_EQ(r.mid, 0x0101);
    CHECK_EQ(r.code, COAP_205_CONTENT);
    CHECK_EQ(r.tkl, 2);
    CHECK_EQ(r.token[0], 0xAB);
    CHECK(sent[0].to.ip == PEER.ip && sent[0].to.port == PEER.port);
}

static void test_duplicate_con_resends_cached_response(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    reset(fake_handler);
    int n = build_request(d, COAP_CON, COAP_POST, 0x0202, "/9/1/4", NULL, 0, 0, 0);
    coap_input(&PEER, d, (uint16_t)n, 1000);
    coap_input(&PEER, d, (uint16_t)n, 3000);
    CHECK_EQ(handler_calls, 1); /* executed once */
    CHECK_EQ(n_sent, 2);
    CHECK_EQ(sent[0].len, sent[1].len);
    CHECK(memcmp(sent[0].data, sent[1].data, sent[0].len) == 0);
    CHECK_EQ(coap_stats()->duplicates, 1);
    /* the same message id from another peer is a different request */
    coap_input(&OTHER, d, (uint16_t)n, 3000);
    CHECK_EQ(handler_calls, 2);
    /* after EXCHANGE_LIFETIME the id may be reused */
    coap_input(&PEER, d, (uint16_t)n, 3000 + COAP_EXCHANGE_LIFETIME_MS + 1);
    CHECK_EQ(handler_calls, 3);
}

static void test_non_request_gets_non_response(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    reset(fake_handler);
    int n = build_request(d, COAP_NON, COAP_GET, 0x0303, "/3/0", NULL, 0, 0, 0);
    coap_input(&PEER, d, (uint16_t)n, 0);
    coap_msg_t r = last_sent();
    CHECK_EQ(r.type, COAP_NON);
    CHECK_EQ(r.code, COAP_205_CONTENT);
    CHECK_EQ(r.token[1], 0x03);
}

static void test_unknown_critical_option_answers_402(void)
{
    reset(fake_handler);
    /* Uri-Path (11) "3", then delta 14 -> option 25: unassigned and odd, so critical */
    const uint8_t m25[] = { 0x42, 0x01, 0x00, 0x09, 0xAB, 0xCD, 0xB1, '3', 0xD1, 14 - 13, 0x00 };
    coap_input(&PEER, m25, sizeof(m25), 0);
    CHECK_EQ(handler_calls, 0);
    coap_msg_t r = last_sent();
    CHECK_EQ(r.type, COAP_ACK);
    CHECK_EQ(r.mid, 9);
    CHECK_EQ(r.code, COAP_402_BAD_OPTION);
    CHECK(r.payload_len > 0 && strstr((const char *)r.payload, "25") != NULL);
}

static void test_malformed_con_is_reset_and_non_ignored(void)
{
    reset(fake_handler);
    const uint8_t bad_con[] = { 0x40, 0x01, 0x00, 0x07, 0xF1, 0x00 };
    coap_input(&PEER, bad_con, sizeof(bad_con), 0);
    CHECK_EQ(n_sent, 1);
    coap_msg_t r = last_sent();
    CHECK_EQ(r.type, COAP_RST);
    CHECK_EQ(r.mid, 7);
    CHECK_EQ(r.code, COAP_EMPTY);
    const uint8_t bad_non[] = { 0x50, 0x01, 0x00, 0x08, 0xF1, 0x00 };
    coap_input(&PEER, bad_non, sizeof(bad_non), 0);
    const uint8_t v3[] = { 0xC0, 0x01, 0x00, 0x09 };
    coap_input(&PEER, v3, sizeof(v3), 0);
    CHECK_EQ(n_sent, 1);
    CHECK_EQ(handler_calls, 0);
    CHECK_EQ(coap_stats()->malformed, 3);
}

static void test_ping_answers_reset(void)
{
    reset(fake_handler);
    const uint8_t ping[] = { 0x40, 0x00, 0x12, 0x34 };
    coap_input(&PEER, ping, sizeof(ping), 0);
    coap_msg_t r = last_sent();
    CHECK_EQ(r.type, COAP_RST);
    CHECK_EQ(r.mid, 0x1234);
}

static void test_unknown_method_answers_405(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    reset(fake_handler);
    int n = build_request(d, COAP_CON, 5 /* FETCH */, 0x0505, "/3/0", NULL, 0, 0, 0);
    coap_input(&PEER, d, (uint16_t)n, 0);
    CHECK_EQ(handler_calls, 0);
    CHECK_EQ(last_sent().code, COAP_405_METHOD_NOT_ALLOWED);
}

static void test_block1_reassembly(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    uint8_t body[2600];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)(i * 7);
    reset(fake_handler);
    for (uint32_t num = 0; num < 3; num++) {
        uint32_t off = num * 1024;
        uint16_t len = (uint16_t)(off + 1024 <= sizeof(body) ? 1024 : sizeof(body) - off);
        int more = off + len < sizeof(body);
        int n = build_request(d, COAP_CON, COAP_PUT, (uint16_t)(0x0600 + num), "/9/1/2", body + off, len,
                              coap_block_value(num, more, 6), 1);
        coap_input(&PEER, d, (uint16_t)n, 100 * num);
        coap_msg_t r = last_sent();
        uint32_t b1 = 0;
        CHECK_EQ(coap_get_uint(&r, COAP_OPT_BLOCK1, &b1), 1);
        if (more) {
            CHECK_EQ(r.code, COAP_231_CONTINUE);
            CHECK_EQ(b1, coap_block_value(num, 1, 6));
            CHECK_EQ(handler_calls, 0);
        } else {
            CHECK_EQ(r.code, COAP_205_CONTENT);
            CHECK_EQ(b1, coap_block_value(num, 0, 6));
        }
    }
    CHECK_EQ(handler_calls, 1);
    CHECK_EQ(handler_body_len, sizeof(body));
    CHECK(memcmp(handler_body, body, sizeof(body)) == 0);
}

static void test_block1_out_of_order_and_short_blocks(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    uint8_t chunk[1024] = { 0 };
    reset(fake_handler);
    /* block 1 without block 0 */
    int n = build_request(d, COAP_CON, COAP_PUT, 0x0700, "/9/1/2", chunk, 1024, coap_block_value(1, 1, 6), 1);
    coap_input(&PEER, d, (uint16_t)n, 0);
    CHECK_EQ(last_sent().code, COAP_408_ENTITY_INCOMPLETE);
    /* block 0 then block 2 (skipping 1) */
    n = build_request(d, COAP_CON, COAP_PUT, 0x0701, "/9/1/2", chunk, 1024, coap_block_value(0, 1, 6), 1);
    coap_input(&PEER, d, (uint16_t)n, 0);
    CHECK_EQ(last_sent().code, COAP_231_CONTINUE);
    n = build_request(d, COAP_CON, COAP_PUT, 0x0702, "/9/1/2", chunk, 1024, coap_block_value(2, 1, 6), 1);
    coap_input(&PEER, d, (uint16_t)n, 0);
    CHECK_EQ(last_sent().code, COAP_408_ENTITY_INCOMPLETE);
    /* a block of another resource does not continue this body */
    n = build_request(d, COAP_CON, COAP_PUT, 0x0703, "/9/1/2", chunk, 1024, coap_block_value(0, 1, 6), 1);
    coap_input(&PEER, d, (uint16_t)n, 0);
    n = build_request(d, COAP_CON, COAP_PUT, 0x0704, "/9/2/2", chunk, 1024, coap_block_value(1, 1, 6), 1);
    coap_input(&PEER, d, (uint16_t)n, 0);
    CHECK_EQ(last_sent().code, COAP_408_ENTITY_INCOMPLETE);
    /* a non-final block shorter than its size */
    n = build_request(d, COAP_CON, COAP_PUT, 0x0705, "/9/1/2", chunk, 100, coap_block_value(0, 1, 6), 1);
    coap_input(&PEER, d, (uint16_t)n, 0);
    CHECK_EQ(last_sent().code, COAP_400_BAD_REQUEST);
    /* reserved size exponent */
    n = build_request(d, COAP_CON, COAP_PUT, 0x0706, "/9/1/2", chunk, 100, coap_block_value(0, 0, 7), 1);
    coap_input(&PEER, d, (uint16_t)n, 0);
    CHECK_EQ(last_sent().code, COAP_400_BAD_REQUEST);
    CHECK_EQ(handler_calls, 0);
}

static void test_block1_too_large_answers_413_with_size1(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    uint8_t chunk[1024] = { 0 };
    reset(fake_handler);
    uint32_t num = 0;
    uint8_t last_code = 0;
    for (; num < 20; num++) {
        int n = build_request(d, COAP_CON, COAP_PUT, (uint16_t)(0x0800 + num), "/9/1/2", chunk, 1024,
                              coap_block_value(num, 1, 6), 1);
        coap_input(&PEER, d, (uint16_t)n, num);
        last_code = last_sent().code;
        if (last_code != COAP_231_CONTINUE)
            break;
    }
    CHECK_EQ(num, COAP_BLOCK1_MAX / 1024); /* the block that would pass the limit */
    CHECK_EQ(last_code, COAP_413_ENTITY_TOO_LARGE);
    coap_msg_t r = last_sent();
    uint32_t size1 = 0;
    CHECK_EQ(coap_get_uint(&r, COAP_OPT_SIZE1, &size1), 1);
    CHECK_EQ(size1, COAP_BLOCK1_MAX);
    /* the transfer is over: the next block is out of sequence */
    int n = build_request(d, COAP_CON, COAP_PUT, 0x08FF, "/9/1/2", chunk, 1024, coap_block_value(num + 1, 1, 6), 1);
    coap_input(&PEER, d, (uint16_t)n, 100);
    CHECK_EQ(last_sent().code, COAP_408_ENTITY_INCOMPLETE);
    CHECK_EQ(handler_calls, 0);

    /* a Size1 announcing too much is refused on the first block */
    coap_pdu_t p;
    uint8_t body[1100];
    uint8_t tok[1] = { 9 };
    coap_pdu_init(&p, COAP_CON, COAP_PUT, 0x0900, tok, 1, body, sizeof(body));
    coap_pdu_add_str(&p, COAP_OPT_URI_PATH, "9");
    coap_pdu_add_uint(&p, COAP_OPT_BLOCK1, coap_block_value(0, 1, 6));
    coap_pdu_add_uint(&p, COAP_OPT_SIZE1, 20480);
    coap_pdu_set_payload(&p, chunk, 1024);
    n = coap_serialize(&p, d, sizeof(d));
    coap_input(&PEER, d, (uint16_t)n, 200);
    r = last_sent();
    CHECK_EQ(r.code, COAP_413_ENTITY_TOO_LARGE);
    CHECK_EQ(coap_get_uint(&r, COAP_OPT_SIZE1, &size1), 1);
    CHECK_EQ(size1, COAP_BLOCK1_MAX);
}

static void test_block2_slices_large_responses(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    reset(big_handler);
    int n = build_request(d, COAP_CON, COAP_GET, 0x0A00, "/3", NULL, 0, 0, 0);
    coap_input(&PEER, d, (uint16_t)n, 0);
    coap_msg_t r = last_sent();
    uint32_t b2 = 0, size2 = 0;
    CHECK_EQ(r.payload_len, 1024);
    CHECK_EQ(coap_get_uint(&r, COAP_OPT_BLOCK2, &b2), 1);
    CHECK_EQ(b2, coap_block_value(0, 1, 6));
    CHECK_EQ(coap_get_uint(&r, COAP_OPT_SIZE2, &size2), 1);
    CHECK_EQ(size2, 1500);
    /* second block on request */
    coap_pdu_t p;
    uint8_t tok[1] = { 1 };
    coap_pdu_init(&p, COAP_CON, COAP_GET, 0x0A01, tok, 1, NULL, 0);
    coap_pdu_add_str(&p, COAP_OPT_URI_PATH, "3");
    coap_pdu_add_uint(&p, COAP_OPT_BLOCK2, coap_block_value(1, 0, 6));
    n = coap_serialize(&p, d, sizeof(d));
    coap_input(&PEER, d, (uint16_t)n, 0);
    r = last_sent();
    CHECK_EQ(r.payload_len, 1500 - 1024);
    CHECK_EQ(r.payload[0], (uint8_t)('A' + 1024 % 26));
    CHECK_EQ(coap_get_uint(&r, COAP_OPT_BLOCK2, &b2), 1);
    CHECK_EQ(b2, coap_block_value(1, 0, 6));
}

/* ------------------------------------------------------------ endpoint: client side */

static int cb_calls, cb_result;
static uint8_t cb_code;
static void on_response(void *arg, int result, const coap_msg_t *rsp)
{
    (void)arg;
    cb_calls++;
    cb_result = result;
    cb_code = rsp ? rsp->code : 0;
}

static coap_pdu_t send_test_request(uint32_t now)
{
    coap_pdu_t p;
    coap_request_init(&p, COAP_POST, 1, NULL, 0);
    coap_pdu_add_str(&p, COAP_OPT_URI_PATH, "rd");
    cb_calls = 0;
    cb_result = 99;
    CHECK_EQ(coap_send_request(&PEER, &p, on_response, &cb_calls, now), 0);
    return p;
}

static void test_retransmission_schedule_and_timeout(void)
{
    reset(fake_handler);
    send_test_request(0);
    CHECK_EQ(n_sent, 1);
    /* find the first retransmission: between 2 and 3 s */
    uint32_t t = 0, first = 0;
    for (t = 0; t <= 3000 && n_sent == 1; t += 10)
        coap_poll(t);
    first = t - 10;
    CHECK(first >= COAP_ACK_TIMEOUT_MS && first <= COAP_ACK_TIMEOUT_MS + COAP_ACK_RANDOM_MS);
    CHECK_EQ(n_sent, 2);
    CHECK(memcmp(sent[0].data, sent[1].data, sent[0].len) == 0); /* same message id and bytes */
    /* the gaps double: retransmissions 2..4, then the give-up */
    uint32_t prev = first, gap = first;
    for (int k = 3; k <= 5; k++) {
        while (n_sent < k && t < 200000) {
            coap_poll(t);
            t += 10;
        }
        uint32_t at = t - 10;
        CHECK(at - prev >= 2 * gap - 20 && at - prev <= 2 * gap + 20);
        gap = at - prev;
        prev = at;
    }
    CHECK_EQ(n_sent, 1 + COAP_MAX_RETRANSMIT);
    CHECK_EQ(cb_calls, 0);
    while (cb_calls == 0 && t < 300000) {
        coap_poll(t);
        t += 10;
    }
    CHECK_EQ(cb_calls, 1);
    CHECK_EQ(cb_result, COAP_RESULT_TIMEOUT);
    CHECK_EQ(n_sent, 1 + COAP_MAX_RETRANSMIT);
    /* total wait is ACK_TIMEOUT * (2^5 - 1) scaled by the random factor */
    CHECK(t >= 62000 && t <= 93100);
    CHECK_EQ(coap_pending_requests(), 0);
}

static void test_piggybacked_ack_completes_request(void)
{
    reset(fake_handler);
    coap_pdu_t p = send_test_request(0);
    uint8_t ack[16] = { (uint8_t)(0x60 | p.tkl), COAP_201_CREATED, (uint8_t)(p.mid >> 8), (uint8_t)p.mid };
    memcpy(ack + 4, p.token, p.tkl);
    coap_input(&PEER, ack, (uint16_t)(4 + p.tkl), 100);
    CHECK_EQ(cb_calls, 1);
    CHECK_EQ(cb_result, COAP_RESULT_OK);
    CHECK_EQ(cb_code, COAP_201_CREATED);
    for (uint32_t t = 100; t < 10000; t += 100)
        coap_poll(t);
    CHECK_EQ(n_sent, 1); /* no retransmission after the ACK */
    /* an ACK from another peer with the same id does not match */
    reset(fake_handler);
    p = send_test_request(0);
    ack[2] = (uint8_t)(p.mid >> 8);
    ack[3] = (uint8_t)p.mid;
    memcpy(ack + 4, p.token, p.tkl);
    coap_input(&OTHER, ack, (uint16_t)(4 + p.tkl), 100);
    CHECK_EQ(cb_calls, 0);
}

static void test_separate_response_after_empty_ack(void)
{
    reset(fake_handler);
    coap_pdu_t p = send_test_request(0);
    uint8_t empty_ack[4] = { 0x60, 0x00, (uint8_t)(p.mid >> 8), (uint8_t)p.mid };
    coap_input(&PEER, empty_ack, 4, 50);
    CHECK_EQ(cb_calls, 0);
    for (uint32_t t = 50; t < 20000; t += 100)
        coap_poll(t);
    CHECK_EQ(n_sent, 1); /* acknowledged: no retransmission while waiting */
    /* the separate response: CON with the request's token */
    uint8_t rsp[16] = { (uint8_t)(0x40 | p.tkl), COAP_204_CHANGED, 0x77, 0x01 };
    memcpy(rsp + 4, p.token, p.tkl);
    coap_input(&PEER, rsp, (uint16_t)(4 + p.tkl), 20000);
    CHECK_EQ(cb_calls, 1);
    CHECK_EQ(cb_code, COAP_204_CHANGED);
    coap_msg_t a = last_sent();
    CHECK_EQ(a.type, COAP_ACK);
    CHECK_EQ(a.mid, 0x7701);
    CHECK_EQ(a.code, COAP_EMPTY);
    /* its retransmission is acknowledged again, without a second callback */
    coap_input(&PEER, rsp, (uint16_t)(4 + p.tkl), 21000);
    CHECK_EQ(cb_calls, 1);
    CHECK_EQ(last_sent().type, COAP_ACK);
    /* an unrelated CON response is rejected */
    uint8_t stray[6] = { 0x42, COAP_205_CONTENT, 0x77, 0x02, 0xEE, 0xEE };
    coap_input(&PEER, stray, 6, 22000);
    CHECK_EQ(last_sent().type, COAP_RST);
}

static void test_reset_and_cancel(void)
{
    reset(fake_handler);
    coap_pdu_t p = send_test_request(0);
    uint8_t rst[4] = { 0x70, 0x00, (uint8_t)(p.mid >> 8), (uint8_t)p.mid };
    coap_input(&PEER, rst, 4, 10);
    CHECK_EQ(cb_calls, 1);
    CHECK_EQ(cb_result, COAP_RESULT_RESET);
    send_test_request(0);
    coap_cancel(&cb_calls, 1);
    CHECK_EQ(cb_calls, 1);
    CHECK_EQ(cb_result, COAP_RESULT_CANCELLED);
    CHECK_EQ(coap_pending_requests(), 0);
}

static void test_send_failure_is_retried_soon(void)
{
    reset(fake_handler);
    tx_fail_next = 1; /* e.g. ARP still pending */
    send_test_request(0);
    CHECK_EQ(n_sent, 0);
    coap_poll(50);
    CHECK_EQ(n_sent, 0);
    coap_poll(100);
    CHECK_EQ(n_sent, 1); /* 100 ms later, not after a full ACK timeout */
}

static void test_message_ids_and_tokens_differ(void)
{
    reset(fake_handler);
    coap_pdu_t a, b;
    coap_request_init(&a, COAP_GET, 1, NULL, 0);
    coap_request_init(&b, COAP_GET, 1, NULL, 0);
    CHECK(a.mid != b.mid);
    CHECK(memcmp(a.token, b.token, a.tkl) != 0);
}

/* ------------------------------------------------------------ observe */

static void test_observe_notifications(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    reset(fake_handler);
    int n = build_request(d, COAP_CON, COAP_GET, 0x0B00, "/3303/0/5700", NULL, 0, 0, 0);
    coap_msg_t req;
    coap_parse(&req, d, (size_t)n);
    int32_t first = coap_observe_add(&PEER, &req, "/3303/0/5700", COAP_CF_LWM2M_TLV, 0);
    CHECK(first >= 0);
    coap_observer_t *o = coap_observer(0);
    CHECK(o != NULL && strcmp(o->path, "/3303/0/5700") == 0);
    uint32_t last_seq = (uint32_t)first;
    int cons = 0;
    uint8_t buf[16];
    for (int i = 0; i < 16; i++) {
        coap_pdu_t p;
        coap_pdu_init(&p, COAP_NON, COAP_205_CONTENT, 0, NULL, 0, buf, sizeof(buf));
        coap_pdu_set_payload(&p, "21.5", 4);
        CHECK_EQ(coap_notify(o, &p, (uint32_t)i * 100), 0);
        coap_msg_t m = last_sent();
        uint32_t seq = 0;
        CHECK_EQ(coap_get_uint(&m, COAP_OPT_OBSERVE, &seq), 1);
        CHECK(seq > last_seq);
        last_seq = seq;
        CHECK_EQ(m.token[0], 0xAB); /* the observer's token */
        if (m.type == COAP_CON) {
            cons++;
            uint8_t ack[4] = { 0x60, 0x00, (uint8_t)(m.mid >> 8), (uint8_t)m.mid };
            coap_input(&PEER, ack, 4, (uint32_t)i * 100 + 1);
        }
    }
    CHECK_EQ(cons, 2); /* every 8th notification is confirmable */
    CHECK(coap_observer(0) != NULL);
    coap_pdu_t p;
    coap_pdu_init(&p, COAP_NON, COAP_205_CONTENT, 0, NULL, 0, buf, sizeof(buf));
    CHECK_EQ(coap_notify(o, &p, 4000), 0);
    /* a Reset to a non-confirmable notification ends the observation */
    coap_msg_t m = last_sent();
    CHECK_EQ(m.type, COAP_NON);
    uint8_t rst[4] = { 0x70, 0x00, (uint8_t)(m.mid >> 8), (uint8_t)m.mid };
    coap_input(&PEER, rst, 4, 5000);
    CHECK(coap_observer(0) == NULL);
}

static void test_unanswered_con_notification_ends_observation(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    reset(fake_handler);
    int n = build_request(d, COAP_CON, COAP_GET, 0x0C00, "/3/0", NULL, 0, 0, 0);
    coap_msg_t req;
    coap_parse(&req, d, (size_t)n);
    coap_observe_add(&PEER, &req, "/3/0", COAP_CF_LWM2M_TLV, 0);
    coap_observer_t *o = coap_observer(0);
    o->since_con = 7; /* the next one is confirmable */
    coap_pdu_t p;
    coap_pdu_init(&p, COAP_NON, COAP_205_CONTENT, 0, NULL, 0, NULL, 0);
    coap_notify(o, &p, 0);
    CHECK_EQ(last_sent().type, COAP_CON);
    for (uint32_t t = 0; t < 100000; t += 100)
        coap_poll(t);
    CHECK(coap_observer(0) == NULL);
}

static void test_full_observer_table_evicts_the_least_recently_heard(void)
{
    /* observers that left without cancelling (8 observe/cancel cycles on a quiet value) */
    uint8_t d[COAP_MAX_DATAGRAM];
    reset(fake_handler);
    coap_msg_t req;
    for (int i = 0; i < COAP_MAX_OBSERVERS; i++) {
        int n = build_request(d, COAP_CON, COAP_GET, (uint16_t)(0x0D00 + i), "/3303/0/5700", NULL, 0, 0, 0);
        d[4] = (uint8_t)(0x10 + i); /* a token of its own */
        coap_parse(&req, d, (size_t)n);
        CHECK(coap_observe_add(&PEER, &req, "/3303/0/5700", COAP_CF_LWM2M_TLV, (uint32_t)i * 1000) >= 0);
    }
    /* the one heard from most recently stays: its notification refreshes it */
    coap_pdu_t p;
    coap_pdu_init(&p, COAP_NON, COAP_205_CONTENT, 0, NULL, 0, NULL, 0);
    coap_notify(coap_observer(0), &p, 20000);
    int n = build_request(d, COAP_CON, COAP_GET, 0x0DFF, "/3303/0/5700", NULL, 0, 0, 0);
    d[4] = 0x99;
    coap_parse(&req, d, (size_t)n);
    CHECK(coap_observe_add(&PEER, &req, "/3303/0/5700", COAP_CF_LWM2M_TLV, 30000) >= 0); /* not refused */
    int tokens[256] = { 0 };
    for (int i = 0; i < COAP_MAX_OBSERVERS; i++)
        if (coap_observer(i))
            tokens[coap_observer(i)->token[0]] = 1;
    CHECK(tokens[0x99] && tokens[0x10] && !tokens[0x11]); /* 0x11 was the least recently heard */
    CHECK_EQ(coap_stats()->observers_evicted, 1);
}

static void test_quiet_observation_gets_a_confirmable_notification_after_a_while(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    reset(fake_handler);
    int n = build_request(d, COAP_CON, COAP_GET, 0x0E00, "/3/0", NULL, 0, 0, 0);
    coap_msg_t req;
    coap_parse(&req, d, (size_t)n);
    coap_observe_add(&PEER, &req, "/3/0", COAP_CF_LWM2M_TLV, 0);
    coap_pdu_t p;
    coap_pdu_init(&p, COAP_NON, COAP_205_CONTENT, 0, NULL, 0, NULL, 0);
    coap_notify(coap_observer(0), &p, 1000);
    CHECK_EQ(last_sent().type, COAP_NON);
    coap_notify(coap_observer(0), &p, 1000 + COAP_OBS_CON_MS); /* the second one, but a minute later */
    CHECK_EQ(last_sent().type, COAP_CON);
}

static void test_observe_remove_by_token_and_path(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    reset(fake_handler);
    coap_msg_t a, b;
    int n = build_request(d, COAP_CON, COAP_GET, 0x0D01, "/9/1000/7", NULL, 0, 0, 0);
    coap_parse(&a, d, (size_t)n);
    coap_observe_add(&PEER, &a, "/9/1000/7", COAP_CF_TEXT, 0);
    uint8_t d2[COAP_MAX_DATAGRAM];
    n = build_request(d2, COAP_CON, COAP_GET, 0x0D02, "/9/10", NULL, 0, 0, 0);
    coap_parse(&b, d2, (size_t)n);
    coap_observe_add(&PEER, &b, "/9/10", COAP_CF_TEXT, 0);
    /* same peer and token refreshes instead of adding */
    coap_observe_add(&PEER, &a, "/9/1000/7", COAP_CF_TEXT, 0);
    int used = 0;
    for (int i = 0; i < COAP_MAX_OBSERVERS; i++)
        used += coap_observer(i) != NULL;
    CHECK_EQ(used, 2);
    coap_observe_remove_path("/9/1000"); /* removes /9/1000/7, not /9/10 */
    used = 0;
    for (int i = 0; i < COAP_MAX_OBSERVERS; i++)
        used += coap_observer(i) != NULL;
    CHECK_EQ(used, 1);
    CHECK_EQ(coap_observe_remove(&PEER, b.token, b.tkl), 1);
    CHECK_EQ(coap_observe_remove(&PEER, b.token, b.tkl), 0);
}

/* ------------------------------------------------------------ TLV */

static void test_tlv_spec_vector_decodes(void)
{
    /* OMA LwM2M TS 1.0 6.4.3.1 (part): Manufacturer, a multiple resource, a 4-byte time */
    const uint8_t v[] = { 0xC8, 0x00, 0x14, 'O', 'p', 'e', 'n', ' ', 'M', 'o', 'b', 'i', 'l', 'e', ' ', 'A', 'l', 'l',
                          'i', 'a', 'n', 'c', 'e', 0x86, 0x06, 0x41, 0x00, 0x01, 0x41, 0x01, 0x05, 0xC4, 0x0D, 0x51,
                          0x82, 0x42, 0x8F };
    uint32_t pos = 0;
    tlv_t t, inner;
    CHECK_EQ(tlv_validate(v, sizeof(v)), 0);
    CHECK_EQ(tlv_next(v, sizeof(v), &pos, &t), 1);
    CHECK_EQ(t.kind, TLV_RESOURCE);
    CHECK_EQ(t.id, 0);
    CHECK_EQ(t.len, 20);
    CHECK_EQ(tlv_next(v, sizeof(v), &pos, &t), 1);
    CHECK_EQ(t.kind, TLV_MULTIPLE_RESOURCE);
    CHECK_EQ(t.id, 6);
    uint32_t ipos = 0;
    int64_t iv;
    CHECK_EQ(tlv_next(t.value, t.len, &ipos, &inner), 1);
    CHECK_EQ(inner.kind, TLV_RESOURCE_INSTANCE);
    CHECK_EQ(tlv_get_int(&inner, &iv), 0);
    CHECK_EQ(iv, 1);
    CHECK_EQ(tlv_next(t.value, t.len, &ipos, &inner), 1);
    CHECK_EQ(inner.id, 1);
    CHECK_EQ(tlv_get_int(&inner, &iv), 0);
    CHECK_EQ(iv, 5);
    CHECK_EQ(tlv_next(v, sizeof(v), &pos, &t), 1);
    CHECK_EQ(t.id, 13);
    CHECK_EQ(tlv_get_int(&t, &iv), 0);
    CHECK_EQ(iv, 0x5182428F);
    CHECK_EQ(tlv_next(v, sizeof(v), &pos, &t), 0);
}

static void test_tlv_values_round_trip(void)
{
    uint8_t buf[256];
    tlv_writer_t w;
    tlv_writer_init(&w, buf, sizeof(buf));
    const int64_t ints[] = { 0, -1, 127, -128, 128, 32767, -32769, 2147483647LL, 2147483648LL, -9223372036854775807LL - 1 };
    const uint32_t int_sizes[] = { 1, 1, 1, 1, 2, 2, 4, 4, 8, 8 };
    for (int i = 0; i < 10; i++)
        tlv_put_int(&w, TLV_RESOURCE, (uint16_t)i, ints[i]);
    tlv_put_float(&w, TLV_RESOURCE, 20, 21.5);
    tlv_put_float(&w, TLV_RESOURCE, 21, 0.1);
    tlv_put_bool(&w, TLV_RESOURCE, 22, 1);
    tlv_put_str(&w, TLV_RESOURCE, 23, "embServe Node");
    tlv_put_objlnk(&w, TLV_RESOURCE, 27400, 9, 1000);
    CHECK_EQ(w.err, 0);
    uint32_t pos = 0;
    tlv_t t;
    for (int i = 0; i < 10; i++) {
        int64_t v;
        CHECK_EQ(tlv_next(buf, w.len, &pos, &t), 1);
        CHECK_EQ(t.len, int_sizes[i]);
        CHECK_EQ(tlv_get_int(&t, &v), 0);
        CHECK_EQ(v, ints[i]);
    }
    double f;
    CHECK_EQ(tlv_next(buf, w.len, &pos, &t), 1);
    CHECK_EQ(t.len, 4); /* 21.5 is exact in float32 */
    CHECK_EQ(tlv_get_float(&t, &f), 0);
    CHECK(f == 21.5);
    CHECK_EQ(tlv_next(buf, w.len, &pos, &t), 1);
    CHECK_EQ(t.len, 8); /* 0.1 is not */
    CHECK_EQ(tlv_get_float(&t, &f), 0);
    CHECK(f == 0.1);
    int b;
    CHECK_EQ(tlv_next(buf, w.len, &pos, &t), 1);
    CHECK_EQ(tlv_get_bool(&t, &b), 0);
    CHECK_EQ(b, 1);
    CHECK_EQ(tlv_next(buf, w.len, &pos, &t), 1);
    CHECK_EQ(t.len, 13);
    CHECK(memcmp(t.value, "embServe Node", 13) == 0);
    uint16_t o, in;
    CHECK_EQ(tlv_next(buf, w.len, &pos, &t), 1);
    CHECK_EQ(t.id, 27400);
    CHECK_EQ(tlv_get_objlnk(&t, &o, &in), 0);
    CHECK_EQ(o, 9);
    CHECK_EQ(in, 1000);
}

static void test_tlv_containers_and_long_values(void)
{
    static uint8_t buf[4000];
    static uint8_t big[3000];
    memset(big, 'j', sizeof(big));
    tlv_writer_t w;
    tlv_writer_init(&w, buf, sizeof(buf));
    uint32_t inst = tlv_begin(&w);
    tlv_put(&w, TLV_RESOURCE, 2, big, sizeof(big)); /* 16-bit length field */
    uint32_t multi = tlv_begin(&w);
    tlv_put_str(&w, TLV_RESOURCE_INSTANCE, 0, "10.0.2.15");
    tlv_end(&w, multi, TLV_MULTIPLE_RESOURCE, 4);
    tlv_end(&w, inst, TLV_OBJECT_INSTANCE, 1000);
    CHECK_EQ(w.err, 0);
    CHECK_EQ(buf[0], 0x00 | 0x20 | (2 << 3)); /* object instance, 16-bit id, 16-bit length */
    CHECK_EQ(tlv_validate(buf, w.len), 0);
    uint32_t pos = 0;
    tlv_t t, r;
    CHECK_EQ(tlv_next(buf, w.len, &pos, &t), 1);
    CHECK_EQ(t.kind, TLV_OBJECT_INSTANCE);
    CHECK_EQ(t.id, 1000);
    CHECK_EQ(pos, w.len);
    uint32_t ip = 0;
    CHECK_EQ(tlv_next(t.value, t.len, &ip, &r), 1);
    CHECK_EQ(r.len, sizeof(big));
    CHECK_EQ(tlv_next(t.value, t.len, &ip, &r), 1);
    CHECK_EQ(r.kind, TLV_MULTIPLE_RESOURCE);
    CHECK_EQ(r.id, 4);
    /* overflow is reported, not written past the buffer */
    tlv_writer_t small;
    uint8_t tiny[8];
    tlv_writer_init(&small, tiny, sizeof(tiny));
    tlv_put_str(&small, TLV_RESOURCE, 1, "too long for eight bytes");
    CHECK_EQ(small.err, 1);
}

static void test_tlv_malformed(void)
{
    uint32_t pos;
    tlv_t t;
    const uint8_t truncated_value[] = { 0xC8, 0x00, 0x14, 'a' };
    pos = 0;
    CHECK_EQ(tlv_next(truncated_value, sizeof(truncated_value), &pos, &t), -1);
    const uint8_t truncated_id[] = { 0xE0, 0x01 };
    pos = 0;
    CHECK_EQ(tlv_next(truncated_id, sizeof(truncated_id), &pos, &t), -1);
    const uint8_t truncated_len[] = { 0xD8, 0x01, 0x00 };
    pos = 0;
    CHECK_EQ(tlv_next(truncated_len, sizeof(truncated_len), &pos, &t), -1);
    /* a multiple resource whose inner TLV runs past it */
    const uint8_t bad_inner[] = { 0x83, 0x06, 0x42, 0x00, 0x01 };
    CHECK_EQ(tlv_validate(bad_inner, sizeof(bad_inner)), -1);
    const uint8_t int3[] = { 0xC3, 0x01, 1, 2, 3 };
    pos = 0;
    CHECK_EQ(tlv_next(int3, sizeof(int3), &pos, &t), 1);
    int64_t iv;
    double f;
    int b;
    uint16_t o, i;
    CHECK_EQ(tlv_get_int(&t, &iv), -1);
    CHECK_EQ(tlv_get_float(&t, &f), -1);
    CHECK_EQ(tlv_get_bool(&t, &b), -1);
    CHECK_EQ(tlv_get_objlnk(&t, &o, &i), -1);
    const uint8_t bool2[] = { 0xC1, 0x01, 2 };
    pos = 0;
    tlv_next(bool2, sizeof(bool2), &pos, &t);
    CHECK_EQ(tlv_get_bool(&t, &b), -1);
}

/* ------------------------------------------------------------ robustness */

static uint32_t rng = 0x12345678u;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* Random and mutated datagrams: the endpoint must neither crash nor read out of
 * bounds (run under AddressSanitizer) and must keep answering valid requests. */
static void test_garbage_does_not_break_the_endpoint(void)
{
    uint8_t d[COAP_MAX_DATAGRAM];
    uint8_t valid[COAP_MAX_DATAGRAM];
    uint8_t body[1024];
    memset(body, 'p', sizeof(body));
    reset(fake_handler);
    int vlen = build_request(valid, COAP_CON, COAP_PUT, 0x4242, "/9/1000/2", body, 1024, coap_block_value(0, 1, 6), 1);
    for (int i = 0; i < 200000; i++) {
        uint16_t len;
        if (i % 2) {
            len = (uint16_t)(next_rand() % 64);
            for (uint16_t k = 0; k < len; k++)
                d[k] = (uint8_t)next_rand();
            if (len > 0 && (i % 4) == 1)
                d[0] = (uint8_t)(0x40 | (d[0] & 0x3F)); /* mostly version 1 */
        } else {
            len = (uint16_t)vlen;
            memcpy(d, valid, len);
            int flips = 1 + (int)(next_rand() % 4);
            for (int k = 0; k < flips; k++)
                d[next_rand() % 40] ^= (uint8_t)(1u << (next_rand() % 8));
            if (i % 8 == 0)
                len = (uint16_t)(next_rand() % len);
        }
        coap_input(&PEER, d, len, (uint32_t)i);
        if (i % 1000 == 0)
            coap_poll((uint32_t)i);
        if (n_sent > MAX_SENT - 2)
            n_sent = 0;
    }
    /* still serving */
    int calls = handler_calls;
    int n = build_request(d, COAP_CON, COAP_GET, 0x7777, "/3/0", NULL, 0, 0, 0);
    coap_input(&OTHER, d, (uint16_t)n, 300000);
    CHECK_EQ(handler_calls, calls + 1);
    CHECK_EQ(last_sent().code, COAP_205_CONTENT);
    /* TLV reader over random bytes */
    for (int i = 0; i < 100000; i++) {
        uint32_t len = next_rand() % 48, pos = 0;
        for (uint32_t k = 0; k < len; k++)
            d[k] = (uint8_t)next_rand();
        tlv_t t;
        while (tlv_next(d, len, &pos, &t) == 1)
            CHECK(t.value + t.len <= d + len);
        tlv_validate(d, len);
    }
}

/* ------------------------------------------------------------ cross-check output */

static void print_hex(const char *name, const uint8_t *b, uint32_t n)
{
    printf("%s ", name);
    for (uint32_t i = 0; i < n; i++)
        printf("%02x", b[i]);
    printf("\n");
}

/* Encodings the Python codec (hil.lwm2m.tlv) decodes in the pytest wrapper. */
static int tlv_hex(void)
{
    uint8_t buf[512];
    tlv_writer_t w;

    tlv_writer_init(&w, buf, sizeof(buf)); /* /3/0 subset */
    tlv_put_str(&w, TLV_RESOURCE, 0, "embserve-hil");
    tlv_put_str(&w, TLV_RESOURCE, 1, "mps2-an385");
    uint32_t m = tlv_begin(&w);
    tlv_put_int(&w, TLV_RESOURCE_INSTANCE, 0, 0);
    tlv_end(&w, m, TLV_MULTIPLE_RESOURCE, 11);
    tlv_put_int(&w, TLV_RESOURCE, 13, 1700000000);
    tlv_put_str(&w, TLV_RESOURCE, 17, "embServe Node");
    print_hex("device", buf, w.len);

    tlv_writer_init(&w, buf, sizeof(buf)); /* /3303 object with two instances */
    for (uint16_t i = 0; i < 2; i++) {
        uint32_t inst = tlv_begin(&w);
        tlv_put_float(&w, TLV_RESOURCE, 5700, i ? 0.1 : -12.25);
        tlv_put_str(&w, TLV_RESOURCE, 5701, "Cel");
        tlv_end(&w, inst, TLV_OBJECT_INSTANCE, i);
    }
    print_hex("temperature", buf, w.len);

    tlv_writer_init(&w, buf, sizeof(buf)); /* /35003/1 */
    tlv_put_objlnk(&w, TLV_RESOURCE, 27400, 9, 1000);
    tlv_put_str(&w, TLV_RESOURCE, 27401, "0.3");
    print_hex("monitor", buf, w.len);

    tlv_writer_init(&w, buf, sizeof(buf)); /* /9/1000: ints of every width, a bool */
    tlv_put_int(&w, TLV_RESOURCE, 7, 4);
    tlv_put_int(&w, TLV_RESOURCE, 9, -300);
    tlv_put_int(&w, TLV_RESOURCE, 1, 100000);
    tlv_put_int(&w, TLV_RESOURCE, 2, 5000000000LL);
    tlv_put_bool(&w, TLV_RESOURCE, 12, 1);
    print_hex("software", buf, w.len);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "tlv-hex") == 0)
        return tlv_hex();

    test_parse_header_and_options();
    test_parse_extended_delta_and_length();
    test_parse_rejects_malformed();
    test_unknown_critical_options();
    test_serialize_sorts_options_and_round_trips();
    test_block_option_values();
    test_con_request_gets_piggybacked_response();
    test_duplicate_con_resends_cached_response();
    test_non_request_gets_non_response();
    test_unknown_critical_option_answers_402();
    test_malformed_con_is_reset_and_non_ignored();
    test_ping_answers_reset();
    test_unknown_method_answers_405();
    test_block1_reassembly();
    test_block1_out_of_order_and_short_blocks();
    test_block1_too_large_answers_413_with_size1();
    test_block2_slices_large_responses();
    test_retransmission_schedule_and_timeout();
    test_piggybacked_ack_completes_request();
    test_separate_response_after_empty_ack();
    test_reset_and_cancel();
    test_send_failure_is_retried_soon();
    test_message_ids_and_tokens_differ();
    test_observe_notifications();
    test_unanswered_con_notification_ends_observation();
    test_full_observer_table_evicts_the_least_recently_heard();
    test_quiet_observation_gets_a_confirmable_notification_after_a_while();
    test_observe_remove_by_token_and_path();
    test_tlv_spec_vector_decodes();
    test_tlv_values_round_trip();
    test_tlv_containers_and_long_values();
    test_tlv_malformed();
    test_garbage_does_not_break_the_endpoint();

    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
