/* Host-compiled unit tests of the firmware runtime's portable parts: JSON,
 * base64, manifest, UDLM loader, printf formatter and the RAM pool.
 *
 *   test_runtime_host list          names of all tests
 *   test_runtime_host NAME [FILE]   run one (FILE: FITA's service.json for the fita_* tests)
 *
 * Exit status 0 when every check passed; failures are printed with their line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "fmt.h"
#include "json.h"
#include "manifest.h"
#include "pool.h"
#include "udlm.h"

static int failures;
static const char *fita_path;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            printf("%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
            failures++;                                                               \
        }                                                                             \
    } while (0)

#define CHECK_STR(got, want)                                                          \
    do {                                                                              \
        const char *g_ = (got), *w_ = (want);                                         \
        if (strcmp(g_, w_) != 0) {                                                    \
            printf("%s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__, g_, w_);   \
            failures++;                                                               \
        }                                                                             \
    } while (0)

/* ---- JSON --------------------------------------------------------------- */

static json_tok_t toks[64];

static int parse(json_doc_t *d, const char *text)
{
    return json_parse(d, text, (uint32_t)strlen(text), toks, 64);
}

static void test_json_nested_lookup(void)
{
    json_doc_t d;
    char buf[32];
    int32_t v;
    const char *t = " { \"a\" : [1, {\"x\": [true, false, null]}, -0.5e3], \"b\": {\"c\": \"d\"}, \"n\": 42 } ";

    CHECK(parse(&d, t) == 0);
    CHECK(d.tok[0].type == JSON_OBJECT && d.tok[0].count == 3);
    int a = json_object_get(&d, 0, "a");
    CHECK(a > 0 && d.tok[a].type == JSON_ARRAY && d.tok[a].count == 3);
    CHECK(d.tok[json_array_get(&d, a, 2)].type == JSON_NUMBER);
    CHECK(json_array_get(&d, a, 3) == -1);
    int x = json_object_get(&d, json_array_get(&d, a, 1), "x");
    CHECK(d.tok[json_array_get(&d, x, 2)].type == JSON_NULL);
    int c = json_object_get(&d, json_object_get(&d, 0, "b"), "c");
    CHECK(json_string_copy(&d, c, buf, sizeof(buf)) == 1 && strcmp(buf, "d") == 0);
    CHECK(json_int(&d, json_object_get(&d, 0, "n"), &v) == 0 && v == 42);
    CHECK(json_object_get(&d, 0, "missing") == -1);
    CHECK(json_object_get(&d, a, "a") == -1);   /* not an object */
}

static void test_json_string_escapes(void)
{
    json_doc_t d;
    char buf[64];

    CHECK(parse(&d, "\"a\\\"b\\\\c\\/d\\n\\t\\u00e9\\u20ac\\ud83d\\ude00\"") == 0);
    CHECK(json_string_copy(&d, 0, buf, sizeof(buf)) > 0);
    CHECK_STR(buf, "a\"b\\c/d\n\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    CHECK(json_string_equals(&d, 0, "a\"b\\c/d\n\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
    CHECK(!json_string_equals(&d, 0, "a\"b"));
    CHECK(json_string_copy(&d, 0, buf, 4) == -2);

    CHECK(parse(&d, "\"x\\u0000y\"") == 0);
    CHECK(json_string_copy(&d, 0, buf, sizeof(buf)) == -3);

    CHECK(parse(&d, "\"caf\xc3\xa9\"") == 0);
}

static void expect_error(const char *text, uint32_t offset, const char *msg)
{
    json_doc_t d;
    int rc = json_parse(&d, text, (uint32_t)strlen(text), toks, 64);
    if (rc != -1 || d.err == NULL || d.err_offset != offset || strcmp(d.err, msg) != 0) {
        printf("input %s: rc=%d err=\"%s\" at %u, want \"%s\" at %u\n", text, rc, d.err ? d.err : "(none)",
               (unsigned)d.err_offset, msg, (unsigned)offset);
        failures++;
    }
}

static void test_json_errors(void)
{
    expect_error("", 0, "empty document");
    expect_error("   ", 3, "empty document");
    expect_error("[1,]", 3, "unexpected character");
    expect_error("{\"a\":1,}", 7, "expected a string key");
    expect_error("{\"a\" 1}", 5, "expected ':'");
    expect_error("{\"a\":1 \"b\":2}", 7, "expected ',' or '}'");
    expect_error("[1 2]", 3, "expected ',' or ']'");
    expect_error("[1]]", 3, "trailing characters after the document");
    expect_error("{1:2}", 1, "expected a string key");
    expect_error("01", 1, "trailing characters after the document");
    expect_error("-", 0, "bad number");
    expect_error("1.", 0, "bad number: digits must follow '.'");
    expect_error("1e+", 0, "bad number: digits must follow the exponent");
    expect_error("tru", 0, "unexpected character");
    expect_error("nul", 0, "unexpected character");
    expect_error("'a'", 0, "unexpected character");
    expect_error("\"abc", 4, "unterminated string");
    expect_error("\"a\tb\"", 2, "control character in string");
    expect_error("\"\\x\"", 1, "bad escape in string");
    expect_error("\"\\u12G4\"", 1, "bad \\u escape");
    expect_error("\"\\ud800\"", 1, "unpaired surrogate in \\u escape");
    expect_error("\"\\udc00\"", 1, "unpaired surrogate in \\u escape");
    expect_error("\"\xc3\"", 1, "invalid UTF-8 in string");
    expect_error("\"\xc0\xaf\"", 1, "invalid UTF-8 in string");      /* overlong '/' */
    expect_error("\"\xed\xa0\x80\"", 1, "invalid UTF-8 in string");  /* encoded surrogate */
    expect_error("[", 1, "unexpected end of document");
    expect_error("{\"a\":", 5, "unexpected end of document");
    expect_error("[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]", 16, "nesting too deep");
}

static void test_json_limits(void)
{
    json_doc_t d;
    json_tok_t few[3];
    int32_t v;

    CHECK(json_parse(&d, "[1,2,3]", 7, few, 3) == -1 && strcmp(d.err, "too many tokens") == 0);
    CHECK(json_parse(&d, "[1,2]", 5, few, 3) == 0 && d.ntok == 3);
    CHECK(parse(&d, "[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]") == 0);   /* exactly JSON_MAX_DEPTH */

    CHECK(parse(&d, "[2147483647, -2147483648, 2147483648, 1.0, 1e2, \"1\", -0]") == 0);
    CHECK(json_int(&d, json_array_get(&d, 0, 0), &v) == 0 && v == INT32_MAX);
    CHECK(json_int(&d, json_array_get(&d, 0, 1), &v) == 0 && v == INT32_MIN);
    CHECK(json_int(&d, json_array_get(&d, 0, 2), &v) == -3);
    CHECK(json_int(&d, json_array_get(&d, 0, 3), &v) == -2);
    CHECK(json_int(&d, json_array_get(&d, 0, 4), &v) == -2);
    CHECK(json_int(&d, json_array_get(&d, 0, 5), &v) == -1);
    CHECK(json_int(&d, json_array_get(&d, 0, 6), &v) == 0 && v == 0);
}

/* ---- base64 ------------------------------------------------------------- */

static void b64_ok(const char *in, const char *want)
{
    uint8_t out[32];
    uint32_t n = 99;
    int rc = base64_decode(in, (uint32_t)strlen(in), out, sizeof(out), &n, NULL);
    if (rc != 0 || n != strlen(want) || memcmp(out, want, n) != 0) {
        printf("base64 \"%s\": rc=%d n=%u\n", in, rc, (unsigned)n);
        failures++;
    }
}

static void b64_bad(const char *in, uint32_t cap, int want_rc, uint32_t want_pos)
{
    uint8_t out[32];
    uint32_t pos = 999;
    int rc = base64_decode(in, (uint32_t)strlen(in), out, cap, NULL, &pos);
    if (rc != want_rc || pos != want_pos) {
        printf("base64 \"%s\": rc=%d (%s) at %u, want rc=%d at %u\n", in, rc, base64_strerror(rc),
               (unsigned)pos, want_rc, (unsigned)want_pos);
        failures++;
    }
}

static void test_base64(void)
{
    /* RFC 4648 section 10 vectors. */
    b64_ok("", "");
    b64_ok("Zg==", "f");
    b64_ok("Zm8=", "fo");
    b64_ok("Zm9v", "foo");
    b64_ok("Zm9vYg==", "foob");
    b64_ok("Zm9vYmE=", "fooba");
    b64_ok("Zm9vYmFy", "foobar");
    b64_ok("+/+/", "\xfb\xff\xbf");

    b64_bad("Zm9v*mFy", 32, B64_ERR_CHAR, 4);
    b64_bad("Zm9v\nYmFy", 32, B64_ERR_CHAR, 4);
    b64_bad("Zm9vYmF", 32, B64_ERR_LENGTH, 7);
    b64_bad("Zg", 32, B64_ERR_LENGTH, 2);
    b64_bad("Zg=", 32, B64_ERR_PAD, 3);
    b64_bad("Z===", 32, B64_ERR_PAD, 1);
    b64_bad("=Zg=", 32, B64_ERR_PAD, 0);
    b64_bad("Zg=a", 32, B64_ERR_PAD, 3);
    b64_bad("Zg==Zg==", 32, B64_ERR_PAD, 4);
    b64_bad("Zh==", 32, B64_ERR_BITS, 3);
    b64_bad("Zm9=", 32, B64_ERR_BITS, 3);
    b64_bad("Zm9vYmFy", 5, B64_ERR_SPACE, 7);
    CHECK(base64_decoded_max(8) >= 6);
}

/* ---- manifest ----------------------------------------------------------- */

static json_tok_t mtoks[128];

static const char *manifest_error(const char *text)
{
    static char err[96];
    static rt_manifest_t m;
    json_doc_t d;
    err[0] = '\0';
    if (manifest_parse(&m, &d, text, (uint32_t)strlen(text), mtoks, 128, err, sizeof(err)) == 0)
        return "(accepted)";
    return err;
}

#define M_HEAD "\"name\":\"t\",\"version\":1,\"service\":\"VURMTQ==\",\"dependencies\":{\"sdk_api\":1}"

static void test_manifest_fields(void)
{
    static rt_manifest_t m;
    json_doc_t d;
    char err[96];
    const char *t = "{" M_HEAD ",\"data_model\":[\"x\"],\"extra\":{\"ignored\":[1]},"
                    "\"inputs\":[{\"key\":\"rate\",\"type\":0,\"data_model_mapping\":[]}],"
                    "\"outputs\":[{\"key\":\"value\",\"type\":1,\"data_model_mapping\":[\"lwm2m:3303/x/5700\",\"mqtt:t\"]},"
                    "{\"key\":\"n\",\"type\":0}]}";

    CHECK(manifest_parse(&m, &d, t, (uint32_t)strlen(t), mtoks, 128, err, sizeof(err)) == 0);
    CHECK_STR(m.name, "t");
    CHECK(m.version == 1 && m.sdk_api == 1);
    CHECK(m.n_in == 1 && m.in[0].type == RT_TYPE_INT && m.in[0].nmap == 0);
    CHECK_STR(m.in[0].key, "rate");
    CHECK(m.n_out == 2 && m.out[0].nmap == 2 && m.out[1].nmap == 0);
    CHECK_STR(m.out[0].mapping[0], "lwm2m:3303/x/5700");
    CHECK_STR(m.out[0].mapping[1], "mqtt:t");
    CHECK(json_string_equals(&d, m.service_tok, "VURMTQ=="));
}

/* A server's number for an input: whole 32-bit values for an int input, float32 for a float one. */
static void test_manifest_input_number(void)
{
    rt_io_decl_t in_int = {.key = "rate", .type = RT_TYPE_INT}, in_float = {.key = "setpoint", .type = RT_TYPE_FLOAT};
    int32_t i = 7;
    float f = 7.0f;

    CHECK(manifest_input_number(&in_int, 2000.0, &i, &f) == 0 && i == 2000 && f == 7.0f);
    CHECK(manifest_input_number(&in_int, -2147483648.0, &i, &f) == 0 && i == INT32_MIN);
    CHECK(manifest_input_number(&in_int, 2147483647.0, &i, &f) == 0 && i == INT32_MAX);
    i = 7;
    CHECK(manifest_input_number(&in_int, 1500.5, &i, &f) == -1 && i == 7);     /* not whole */
    CHECK(manifest_input_number(&in_int, 2147483648.0, &i, &f) == -1);         /* beyond 32 bits */
    CHECK(manifest_input_number(&in_int, -2147483649.0, &i, &f) == -1);
    CHECK(manifest_input_number(&in_float, 23.5, &i, &f) == 0 && f == 23.5f && i == 7);
    CHECK(manifest_input_number(&in_float, -1e30, &i, &f) == 0 && f == -1e30f);
    CHECK(manifest_input_number(&in_float, 1e39, &i, &f) == -1);               /* beyond float32 */
    CHECK(manifest_input_number(&in_float, 0.0 / 0.0, &i, &f) == -1);          /* NaN */
    CHECK(manifest_input_number(&in_int, 0.0 / 0.0, &i, &f) == -1);
}

static void test_manifest_errors(void)
{
    CHECK_STR(manifest_error("{\"name\":1}"), "manifest: 'name' missing or not a string");
    CHECK_STR(manifest_error("[]"), "manifest: document must be a JSON object");
    CHECK_STR(manifest_error("{\"name\":\"t\",}"), "manifest: invalid JSON at byte 12: expected a string key");
    CHECK_STR(manifest_error("{\"name\":\"\"}"), "manifest: 'name' is empty");
    CHECK_STR(manifest_error("{\"name\":\"0123456789012345678901234567890123\"}"),
              "manifest: 'name' longer than 31 bytes");
    CHECK_STR(manifest_error("{\"name\":\"a\\u0007\"}"), "manifest: 'name' contains a control character");
    CHECK_STR(manifest_error("{\"name\":\"t\",\"version\":1.5}"), "manifest: 'version' must be a 32-bit integer");
    CHECK_STR(manifest_error("{\"name\":\"t\",\"version\":\"1\"}"), "manifest: 'version' missing or not a number");
    CHECK_STR(manifest_error("{\"name\":\"t\",\"version\":1}"), "manifest: 'dependencies' missing or not an object");
    CHECK_STR(manifest_error("{\"name\":\"t\",\"version\":1,\"dependencies\":{\"sdk_api\":2}}"),
              "manifest: unsupported sdk_api 2 (this device has 1)");
    CHECK_STR(manifest_error("{\"name\":\"t\",\"version\":1,\"dependencies\":{\"sdk_api\":1}}"),
              "manifest: 'service' missing or not a string");
    CHECK_STR(manifest_error("{\"name\":\"t\",\"version\":1,\"service\":\"\",\"dependencies\":{\"sdk_api\":1}}"),
              "manifest: 'service' is empty");
    CHECK_STR(manifest_error("{" M_HEAD ",\"inputs\":{}}"), "manifest: inputs must be an array");
    CHECK_STR(manifest_error("{" M_HEAD ",\"inputs\":[1]}"), "manifest: inputs[0] must be an object");
    CHECK_STR(manifest_error("{" M_HEAD ",\"outputs\":[{\"type\":1}]}"),
              "manifest: outputs[0].key missing or not a string");
    CHECK_STR(manifest_error("{" M_HEAD ",\"outputs\":[{\"key\":\"v\",\"type\":7}]}"),
              "manifest: outputs[0].type must be 0 (int) or 1 (float)");
    CHECK_STR(manifest_error("{" M_HEAD ",\"outputs\":[{\"key\":\"v\",\"type\":1},{\"key\":\"v\",\"type\":0}]}"),
              "manifest: outputs[1].key duplicates an earlier key");
    CHECK_STR(manifest_error("{" M_HEAD ",\"outputs\":[{\"key\":\"v\",\"type\":1,\"data_model_mapping\":\"x\"}]}"),
              "manifest: outputs[0].data_model_mapping must be an array of strings");
    CHECK_STR(manifest_error("{" M_HEAD ",\"outputs\":[{\"key\":\"v\",\"type\":1,\"data_model_mapping\":[1]}]}"),
              "manifest: outputs[0].data_model_mapping entries must be non-empty strings of at most 47 bytes");
    CHECK_STR(manifest_error("{" M_HEAD ",\"inputs\":[{\"key\":\"a\",\"type\":0},{\"key\":\"b\",\"type\":0},"
                             "{\"key\":\"c\",\"type\":0},{\"key\":\"d\",\"type\":0},{\"key\":\"e\",\"type\":0},"
                             "{\"key\":\"f\",\"type\":0},{\"key\":\"g\",\"type\":0},{\"key\":\"h\",\"type\":0},"
                             "{\"key\":\"i\",\"type\":0}]}"),
              "manifest: inputs has 9 entries, at most 8 supported");
}

/* ---- UDLM --------------------------------------------------------------- */

static const char *resolved[16];
static int nresolved;

static uint32_t resolve_sdk(const char *name)
{
    static const char *known[] = {"embserve_printf_impl", "embserve_output_impl", "embserve_get_sensor_impl",
                                  "embserve_get_sensor_data_impl", "embserve_sleep_impl", "memcpy", "memset",
                                  "strcmp"};
    for (uint32_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(known[i], name) == 0) {
            if (nresolved < 16)
                resolved[nresolved++] = known[i];
            return 0x10001u + 0x100u * i;   /* distinct, Thumb */
        }
    }
    return 0;
}

/* A tiny module: LOT 3, code 16 bytes, data 8, bss 4; symbols: name, setup
 * and loop exports, a local data symbol, an extern.  Relocations fill LOT 0
 * (data+4), LOT 1 (code+9), LOT 2 (extern memcpy) and data word 1 (loop). */
typedef struct {
    uint8_t bytes[512];
    uint32_t len;
} image_t;

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void build_image(image_t *im, const char *extern_name)
{
    uint8_t *p = im->bytes;
    const uint32_t nsyms = 5, nrels = 4;
    const char *names[] = {"tiny", "setup", "loop", extern_name};
    uint8_t symt[256];
    uint32_t strpos = 4 + 8 * nsyms;
    uint32_t name_off[4];

    memset(im, 0, sizeof(*im));
    memset(symt, 0, sizeof(symt));
    for (int i = 0; i < 4; i++) {
        name_off[i] = strpos;
        strcpy((char *)symt + strpos, names[i]);
        strpos += (uint32_t)strlen(names[i]) + 1;
    }
    uint32_t symt_size = (strpos + 3u) & ~3u;
    put32(symt, nsyms);
    /* {name|info<<28, value} */
    put32(symt + 4, name_off[0] | (3u << 28));  put32(symt + 8, 0);
    put32(symt + 12, name_off[1] | (5u << 28)); put32(symt + 16, 0x1);     /* setup: code, exported */
    put32(symt + 20, name_off[2] | (5u << 28)); put32(symt + 24, 0x9);     /* loop */
    put32(symt + 28, 0);                        put32(symt + 32, 4);       /* local data +4 */
    put32(symt + 36, name_off[3] | (2u << 28)); put32(symt + 40, 0);       /* extern */

    memcpy(p, "UDLM", 4);
    p[4] = 3; p[5] = 0;                 /* num_lot */
    p[6] = (uint8_t)nrels; p[7] = 0;    /* num_rels */
    put32(p + 8, symt_size);
    put32(p + 12, 16);                  /* code */
    put32(p + 16, 8);                   /* data */
    put32(p + 20, 4);                   /* bss */
    uint8_t *r = p + 24;
    put32(r + 0, 0);  put32(r + 4, 3);
    put32(r + 8, 1);  put32(r + 12, 2);
    put32(r + 16, 2); put32(r + 20, 4);
    put32(r + 24, 3 + 1); put32(r + 28, 2);     /* data word 1 */
    uint8_t *s = r + 8 * nrels;
    memcpy(s, symt, symt_size);
    uint8_t *code = s + symt_size;
    for (int i = 0; i < 16; i++)
        code[i] = (uint8_t)(0xA0 + i);
    uint8_t *data = code + 16;
    for (int i = 0; i < 8; i++)
        data[i] = (uint8_t)(0x10 + i);
    im->len = (uint32_t)(data + 8 - p);
}

static uint64_t ram[512];

static const char *load_error(image_t *im)
{
    static char err[96];
    udlm_image_t img;
    udlm_module_t mod;
    err[0] = '\0';
    if (udlm_parse(&img, im->bytes, im->len, err, sizeof(err)) != 0)
        return err;
    if (udlm_load(&img, ram, sizeof(ram), resolve_sdk, &mod, err, sizeof(err)) != 0)
        return err;
    return "(loaded)";
}

static void test_udlm_synthetic_load(void)
{
    image_t im;
    udlm_image_t img;
    udlm_module_t mod;
    char err[96];

    build_image(&im, "memcpy");
    CHECK(udlm_parse(&img, im.bytes, im.len, err, sizeof(err)) == 0);
    CHECK(udlm_ram_size(&img) == 16 + 16 + 16);
    memset(ram, 0xEE, sizeof(ram));
    CHECK(udlm_load(&img, ram, sizeof(ram), resolve_sdk, &mod, err, sizeof(err)) == 0);
    CHECK_STR(mod.name, "tiny");
    uint32_t code = (uint32_t)(uintptr_t)mod.code, data = (uint32_t)(uintptr_t)mod.data;
    CHECK((uint8_t *)mod.lot == (uint8_t *)ram);
    CHECK(mod.data == (uint8_t *)ram + 16 && mod.code == (uint8_t *)ram + 32);
    CHECK(mod.lot[0] == data + 4);
    CHECK(mod.lot[1] == code + 9);
    CHECK(mod.lot[2] == 0x10001u + 0x500u);   /* memcpy */
    CHECK(mod.setup == (code + 1) && mod.loop == (code + 9));
    CHECK(mod.on_input == 0 && mod.on_quit == 0);
    uint32_t w;
    memcpy(&w, mod.data + 4, 4);
    CHECK(w == code + 9);                      /* data relocation */
    CHECK(mod.data[0] == 0x10 && mod.data[3] == 0x13);
    CHECK(mod.data[8] == 0 && mod.data[11] == 0);   /* bss zeroed */
    CHECK(mod.code[0] == 0xA0 && mod.code[15] == 0xAF);
    CHECK(udlm_load(&img, (uint8_t *)ram + 4, sizeof(ram), resolve_sdk, &mod, err, sizeof(err)) == -1);
    CHECK(udlm_load(&img, ram, 40, resolve_sdk, &mod, err, sizeof(err)) == -1);
    CHECK_STR(err, "not enough RAM for the module");
}

static void test_udlm_rejects(void)
{
    image_t im;

    build_image(&im, "embserve_reboot_impl");
    CHECK_STR(load_error(&im), "unknown import 'embserve_reboot_impl'");

    build_image(&im, "memcpy");
    im.len = 20;
    CHECK_STR(load_error(&im), "module shorter than its header");

    build_image(&im, "memcpy");
    im.bytes[0] = 'X';
    CHECK_STR(load_error(&im), "module has no UDLM magic");

    build_image(&im, "memcpy");
    im.len -= 1;
    CHECK(strstr(load_error(&im), "module sizes add up to") != NULL);

    build_image(&im, "memcpy");
    put32(im.bytes + 24 + 4, 9);    /* relocation 0 -> symbol 9 of 5 */
    CHECK_STR(load_error(&im), "module relocation 0 names bad symbol 9");

    build_image(&im, "memcpy");
    put32(im.bytes + 24 + 4, 0);    /* relocation against the module name */
    CHECK_STR(load_error(&im), "module relocation 0 names bad symbol 0");

    build_image(&im, "memcpy");
    put32(im.bytes + 24 + 24, 3 + 2);   /* data word 2 of a 2-word data section */
    CHECK_STR(load_error(&im), "module relocation 3 targets slot 5 outside LOT and data");

    build_image(&im, "memcpy");
    {
        uint8_t *symt = im.bytes + 24 + 32;
        put32(symt + 16, 0x41);     /* setup beyond the 16-byte code */
    }
    CHECK_STR(load_error(&im), "module symbol 1 value 0x41 outside its section");

    build_image(&im, "memcpy");
    {
        uint8_t *symt = im.bytes + 24 + 32;
        put32(symt + 12, 0xFFF | (5u << 28));   /* name offset outside the table */
    }
    CHECK_STR(load_error(&im), "module symbol name outside the string area");

    build_image(&im, "memcpy");
    {
        uint8_t *symt = im.bytes + 24 + 32;
        put32(symt + 4, 44 | (1u << 28));       /* symbol 0 not the module name */
    }
    CHECK_STR(load_error(&im), "module name must be symbol 0 and only there");

    build_image(&im, "memcpy");
    {
        uint8_t *symt = im.bytes + 24 + 32;
        put32(symt, 500);                       /* symbol count beyond the table */
    }
    CHECK_STR(load_error(&im), "module symbol table count out of range");

    build_image(&im, "memcpy");
    {
        uint8_t *symt = im.bytes + 24 + 32;
        put32(symt + 20, 4u << 28);             /* "loop" becomes a nameless local code symbol */
    }
    CHECK_STR(load_error(&im), "module has no 'loop' export");
}

static char *read_file(const char *path, uint32_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[65536];
    *len = (uint32_t)fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return buf;
}

static void test_fita_module(void)
{
    static rt_manifest_t m;
    static uint8_t image[8192];
    json_doc_t d;
    json_str_iter_t it;
    b64_stream_t st;
    udlm_image_t img;
    udlm_module_t mod;
    char err[96];
    uint32_t len;
    int c;

    char *text = read_file(fita_path, &len);
    CHECK(text != NULL);
    if (!text)
        return;
    CHECK(manifest_parse(&m, &d, text, len, mtoks, 128, err, sizeof(err)) == 0);
    CHECK_STR(m.name, "temperature_sensor");
    CHECK(m.version == 1 && m.n_in == 1 && m.n_out == 1);
    CHECK_STR(m.in[0].key, "rate");
    CHECK_STR(m.out[0].mapping[0], "lwm2m:3303/x/5700");

    json_str_iter_init(&it, &d, m.service_tok);
    b64_stream_init(&st, image, sizeof(image));
    while ((c = json_str_iter_next(&it)) >= 0)
        CHECK(b64_stream_feed(&st, (uint8_t)c) == 0);
    CHECK(b64_stream_finish(&st) == 0);
    CHECK(st.len == 1624);

    CHECK(udlm_parse(&img, image, st.len, err, sizeof(err)) == 0);
    CHECK(img.num_lot == 28 && img.num_rels == 28 && img.num_syms == 33);
    CHECK(img.code_size == 920 && img.data_size == 0 && img.bss_size == 8);
    nresolved = 0;
    CHECK(udlm_load(&img, ram, sizeof(ram), resolve_sdk, &mod, err, sizeof(err)) == 0);
    CHECK_STR(mod.name, "temperature_sensor");
    CHECK(nresolved == 8);
    uint32_t code = (uint32_t)(uintptr_t)mod.code;
    CHECK(mod.setup == code + 0x01 && mod.loop == code + 0x1d);
    CHECK(mod.on_input == code + 0x39 && mod.on_quit == code + 0x55);
    /* Wrappers load the lookup pointer from absolute 0x28: "mov.w r1, #0x28". */
    CHECK(mod.code[6] == 0x4f && mod.code[7] == 0xf0 && mod.code[8] == 0x28 && mod.code[9] == 0x01);
    CHECK(mod.lot[0] == code + 0x2e1);          /* the module name string */
    CHECK(strcmp((const char *)mod.code + 0x2e1, "temperature_sensor") == 0);
    CHECK(mod.lot[3] == (uint32_t)(uintptr_t)mod.data + 4);     /* bss variable */
    CHECK(mod.lot[6] == 0x10001u + 0x600u);     /* memset */
}

/* ---- printf ------------------------------------------------------------- */

/* An AAPCS argument area as the module's printf wrapper hands it over: the
 * va pointer is one word past an 8-aligned slot (where the format string
 * sat), so a double right after the format string skips a word. */
typedef struct {
    uint64_t words[16];
    uint32_t pos;       /* byte offset of the next argument */
} va_area_t;

static void va_init(va_area_t *a)
{
    memset(a, 0, sizeof(*a));
    a->pos = 4;
}

static void va_u32(va_area_t *a, uint32_t v)
{
    memcpy((uint8_t *)a->words + a->pos, &v, 4);
    a->pos += 4;
}

static void va_u64(va_area_t *a, uint64_t v)
{
    a->pos = (a->pos + 7u) & ~7u;
    memcpy((uint8_t *)a->words + a->pos, &v, 8);
    a->pos += 8;
}

static void va_double(va_area_t *a, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    va_u64(a, v);
}

static void va_ptr(va_area_t *a, const void *p)
{
    if (sizeof(void *) == 4)
        va_u32(a, (uint32_t)(uintptr_t)p);
    else
        va_u64(a, (uint64_t)(uintptr_t)p);
}

static const char *format(const char *fmt, va_area_t *a)
{
    static char out[128];
    rt_vformat(out, sizeof(out), fmt, (const uint8_t *)a->words + 4);
    return out;
}

static void test_fmt_integers_strings(void)
{
    va_area_t a;

    va_init(&a); va_u32(&a, (uint32_t)-7); va_u32(&a, 4000000000u); va_u32(&a, 0xbeef); va_u32(&a, 0xbeef);
    CHECK_STR(format("d=%d u=%u x=%x X=%X", &a), "d=-7 u=4000000000 x=beef X=BEEF");
    va_init(&a); va_u32(&a, 'Z'); va_u32(&a, 42); va_u32(&a, 123456789);
    CHECK_STR(format("%c %i %lu %%", &a), "Z 42 123456789 %");
    va_init(&a); va_u32(&a, 42); va_u32(&a, 42); va_u32(&a, (uint32_t)-42); va_u32(&a, 8); va_u32(&a, 255);
    CHECK_STR(format("[%5d][%-5d][%05d][%#o][%#x]", &a), "[   42][42   ][-0042][010][0xff]");
    va_init(&a); va_u32(&a, 5); va_u32(&a, 3); va_u32(&a, 7);
    CHECK_STR(format("[%+d][% d][%.3d]", &a), "[+5][ 3][007]");
    va_init(&a); va_u32(&a, 6); va_u32(&a, 9);
    CHECK_STR(format("[%*d]", &a), "[     9]");
    va_init(&a); va_u64(&a, (uint64_t)-1234567890123ll);
    CHECK_STR(format("%lld", &a), "-1234567890123");
    va_init(&a); va_u32(&a, 1); va_u64(&a, 0x123456789abcdefull);
    CHECK_STR(format("%d %llx", &a), "1 123456789abcdef");
    va_init(&a); va_ptr(&a, "txt"); va_ptr(&a, NULL); va_ptr(&a, "abcdef");
    CHECK_STR(format("[%s][%s][%.3s]", &a), "[txt][(null)][abc]");
    va_init(&a); va_ptr(&a, "ab");
    CHECK_STR(format("[%-4s][%q]", &a), "[ab  ][%q]");
    va_init(&a); va_u32(&a, 1);
    CHECK_STR(format("trailing %", &a), "trailing ");
}

static void test_fmt_doubles(void)
{
    va_area_t a;

    /* First variadic argument a double: it sits at the next 8-aligned slot. */
    va_init(&a); va_double(&a, 21.5);
    CHECK(a.pos == 16);
    CHECK_STR(format("f=%f", &a), "f=21.500000");
    va_init(&a); va_u32(&a, (uint32_t)-7); va_double(&a, 3.25); va_ptr(&a, "txt");
    CHECK_STR(format("d=%d f=%.2f s=%s", &a), "d=-7 f=3.25 s=txt");
    va_init(&a); va_double(&a, -0.125); va_double(&a, 2.5); va_double(&a, 0.999999999);
    CHECK_STR(format("%.3f %05.1f %.2f", &a), "-0.125 002.5 1.00");
    va_init(&a); va_double(&a, 1234.5); va_double(&a, 0.0001); va_double(&a, 1e20);
    CHECK_STR(format("%e %g %g", &a), "1.234500e+03 0.0001 1e+20");
    va_init(&a); va_double(&a, 100000.0); va_double(&a, 0.5);
    CHECK_STR(format("%g %.0f", &a), "100000 1");
    double inf = __builtin_inf(), nan = __builtin_nan("");
    va_init(&a); va_double(&a, inf); va_double(&a, -inf); va_double(&a, nan);
    CHECK_STR(format("%f %f %F", &a), "inf -inf NAN");
    va_init(&a); va_double(&a, 1e19);
    CHECK_STR(format("%f", &a), "1.000000e+19");
}

static void test_fmt_truncation(void)
{
    char out[8];
    va_area_t a;
    va_init(&a); va_ptr(&a, "abcdefghij");
    CHECK(rt_vformat(out, sizeof(out), "%s", (const uint8_t *)a.words + 4) == 7);
    CHECK_STR(out, "abcdefg");
    CHECK(rt_vformat(out, 1, "xyz", (const uint8_t *)a.words + 4) == 0 && out[0] == '\0');
}

/* ---- pool --------------------------------------------------------------- */

static void test_pool(void)
{
    pool_init();
    uint32_t total = pool_free_bytes();
    CHECK(total == RT_POOL_BYTES - 8);
    void *a = pool_alloc(100), *b = pool_alloc(1000), *c = pool_alloc(50);
    CHECK(a && b && c);
    CHECK(((uintptr_t)a & 7) == 0 && ((uintptr_t)b & 7) == 0);
    CHECK((uint8_t *)b >= (uint8_t *)a + 104 && (uint8_t *)c >= (uint8_t *)b + 1000);
    memset(a, 1, 100);
    memset(b, 2, 1000);
    memset(c, 3, 50);
    pool_free(b);
    void *d = pool_alloc(800);
    CHECK(d == b);                      /* first fit reuses the hole */
    pool_free(a);
    pool_free(c);
    pool_free(d);
    CHECK(pool_free_bytes() == total);  /* everything merged back */
    CHECK(pool_largest_free() == total);
    CHECK(pool_alloc(0) == NULL);
    CHECK(pool_alloc(RT_POOL_BYTES) == NULL);
    void *big = pool_alloc(total);
    CHECK(big != NULL && pool_alloc(8) == NULL);
    pool_free(big);
    pool_free(NULL);
    CHECK(pool_free_bytes() == total);
}

/* ------------------------------------------------------------------------- */

static const struct {
    const char *name;
    void (*fn)(void);
    int needs_fita;
} tests[] = {
    {"json_nested_lookup", test_json_nested_lookup, 0},
    {"json_string_escapes", test_json_string_escapes, 0},
    {"json_errors", test_json_errors, 0},
    {"json_limits", test_json_limits, 0},
    {"base64", test_base64, 0},
    {"manifest_fields", test_manifest_fields, 0},
    {"manifest_errors", test_manifest_errors, 0},
    {"manifest_input_number", test_manifest_input_number, 0},
    {"udlm_synthetic_load", test_udlm_synthetic_load, 0},
    {"udlm_rejects", test_udlm_rejects, 0},
    {"fita_module", test_fita_module, 1},
    {"fmt_integers_strings", test_fmt_integers_strings, 0},
    {"fmt_doubles", test_fmt_doubles, 0},
    {"fmt_truncation", test_fmt_truncation, 0},
    {"pool", test_pool, 0},
};

int main(int argc, char **argv)
{
    const uint32_t n = sizeof(tests) / sizeof(tests[0]);
    if (argc >= 2 && strcmp(argv[1], "list") == 0) {
        for (uint32_t i = 0; i < n; i++)
            printf("%s%s\n", tests[i].name, tests[i].needs_fita ? " fita" : "");
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s list | NAME [FITA_SERVICE_JSON]\n", argv[0]);
        return 2;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (strcmp(argv[1], tests[i].name) != 0)
            continue;
        fita_path = argc >= 3 ? argv[2] : NULL;
        if (tests[i].needs_fita && !fita_path) {
            fprintf(stderr, "%s needs the path of FITA's service.json\n", tests[i].name);
            return 2;
        }
        tests[i].fn();
        printf("%s: %s (%d failed checks)\n", tests[i].name, failures ? "FAIL" : "ok", failures);
        return failures ? 1 : 0;
    }
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
}
