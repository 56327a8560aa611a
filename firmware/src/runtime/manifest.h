/* service.json: the fields the runtime needs, checked strictly. */
#ifndef RT_MANIFEST_H
#define RT_MANIFEST_H

#include <stdint.h>

#include "json.h"

#define RT_MAX_IO        8
#define RT_MAX_MAPPINGS  2
#define RT_KEY_MAX       32     /* including the NUL, as in the SDK io struct */
#define RT_MAPPING_MAX   48
#define RT_SDK_API       1

enum { RT_TYPE_INT = 0, RT_TYPE_FLOAT = 1 };

typedef struct {
    char    key[RT_KEY_MAX];
    uint8_t type;
    uint8_t nmap;
    char    mapping[RT_MAX_MAPPINGS][RT_MAPPING_MAX];   /* e.g. "lwm2m:3303/x/5700" */
} rt_io_decl_t;

typedef struct {
    char         name[32];
    int32_t      version;
    int32_t      sdk_api;
    uint8_t      n_in;
    uint8_t      n_out;
    rt_io_decl_t in[RT_MAX_IO];
    rt_io_decl_t out[RT_MAX_IO];
    int          service_tok;   /* JSON token of the base64 module */
} rt_manifest_t;

/* Parse text into doc (tokens in toks) and fill m; 0 or -1 with a message
 * such as "manifest: 'name' missing or not a string". */
int manifest_parse(rt_manifest_t *m, json_doc_t *doc, const char *text, uint32_t len,
                   json_tok_t *toks, uint16_t cap, char *err, uint32_t errlen);

/* A number written to an input (a server's write of the resource the input is
 * mapped to) in the input's type: *i for an int input (whole, 32-bit), *f for
 * a float input (finite, float32 range); 0, or -1 when it does not fit. */
int manifest_input_number(const rt_io_decl_t *in, double v, int32_t *i, float *f);

#endif
