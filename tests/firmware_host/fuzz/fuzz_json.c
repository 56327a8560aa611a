/* libFuzzer target: the firmware's JSON tokenizer and service.json reader
 * (firmware/src/runtime/json.c, manifest.c, base64.c, udlm.c), as Install runs them. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "runtime/base64.h"
#include "runtime/json.h"
#include "runtime/manifest.h"
#include "runtime/udlm.h"

static json_tok_t g_tok[256];
static uint8_t g_module[16384];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_doc_t doc;
    rt_manifest_t m;
    char err[128];
    if (size > 65536)
        return 0;
    if (json_parse(&doc, (const char *)data, (uint32_t)size, g_tok, 256) >= 0) {
        int name = json_object_get(&doc, 0, "name");
        char text[64];
        int32_t v;
        if (name >= 0) {
            (void)json_string_copy(&doc, name, text, sizeof(text));
            (void)json_int(&doc, name, &v);
        }
        (void)json_array_get(&doc, 0, 3);
    }
    if (manifest_parse(&m, &doc, (const char *)data, (uint32_t)size, g_tok, 256, err, sizeof(err)) == 0) {
        json_str_iter_t it;
        b64_stream_t st;
        int c;
        json_str_iter_init(&it, &doc, m.service_tok);
        b64_stream_init(&st, g_module, sizeof(g_module));
        while ((c = json_str_iter_next(&it)) >= 0 && b64_stream_feed(&st, (uint8_t)c) == 0) {
        }
        b64_stream_finish(&st);
        udlm_image_t img;
        if (!st.err)
            (void)udlm_parse(&img, g_module, st.len, err, sizeof(err));
    }
    return 0;
}
