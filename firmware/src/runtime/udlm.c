#include "udlm.h"

#include <stdio.h>
#include <string.h>

static uint32_t rd16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint32_t align8(uint32_t n)
{
    return (n + 7u) & ~7u;
}

static int fail(char *err, uint32_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return -1;
}

int udlm_symbol(const udlm_image_t *img, uint32_t index, udlm_sym_t *out)
{
    if (index >= img->num_syms)
        return -1;
    const uint8_t *e = img->symt + 4 + 8 * index;
    uint32_t word = rd32(e);
    uint32_t info = word >> 28;
    uint32_t off = word & 0x0FFFFFFFu;

    out->kind = (uint8_t)(info & 3u);
    out->in_code = (uint8_t)((info >> 2) & 1u);
    out->value = rd32(e + 4);
    out->name = out->kind == UDLM_SYM_LOCAL ? "" : (const char *)img->symt + off;
    return 0;
}

/* The value of a defined symbol must point inside its section. */
static int value_in_range(const udlm_image_t *img, const udlm_sym_t *s)
{
    if (s->in_code)
        return (s->value & ~1u) <= img->code_size;
    return s->value <= img->data_size + img->bss_size;
}

int udlm_parse(udlm_image_t *img, const uint8_t *buf, uint32_t len, char *err, uint32_t errlen)
{
    memset(img, 0, sizeof(*img));
    if (len < UDLM_HEADER_SIZE)
        return fail(err, errlen, "module shorter than its header");
    if (memcmp(buf, "UDLM", 4) != 0)
        return fail(err, errlen, "module has no UDLM magic");

    img->num_lot = (uint16_t)rd16(buf + 4);
    img->num_rels = (uint16_t)rd16(buf + 6);
    img->symt_size = rd32(buf + 8);
    img->code_size = rd32(buf + 12);
    img->data_size = rd32(buf + 16);
    img->bss_size = rd32(buf + 20);

    if (img->num_lot > UDLM_MAX_LOT)
        return fail(err, errlen, "module LOT too large");
    if (img->symt_size > UDLM_MAX_SECTION || img->code_size > UDLM_MAX_SECTION ||
        img->data_size > UDLM_MAX_SECTION || img->bss_size > UDLM_MAX_SECTION)
        return fail(err, errlen, "module section too large");
    /* All terms are bounded above, so the sum cannot overflow. */
    uint32_t total = UDLM_HEADER_SIZE + 8u * img->num_rels + img->symt_size + img->code_size + img->data_size;
    if (total != len) {
        if (err && errlen)
            snprintf(err, errlen, "module sizes add up to %lu bytes, image has %lu",
                     (unsigned long)total, (unsigned long)len);
        return -1;
    }
    if (img->code_size == 0)
        return fail(err, errlen, "module has no code");

    img->rels = buf + UDLM_HEADER_SIZE;
    img->symt = img->rels + 8u * img->num_rels;
    img->code = img->symt + img->symt_size;
    img->data = img->code + img->code_size;

    if (img->symt_size < 4)
        return fail(err, errlen, "module symbol table truncated");
    img->num_syms = rd32(img->symt);
    if (img->num_syms == 0 || img->num_syms > UDLM_MAX_SYMBOLS ||
        4u + 8u * img->num_syms > img->symt_size)
        return fail(err, errlen, "module symbol table count out of range");

    for (uint32_t i = 0; i < img->num_syms; i++) {
        udlm_sym_t s;
        udlm_symbol(img, i, &s);
        if ((i == 0) != (s.kind == UDLM_SYM_NAME))
            return fail(err, errlen, "module name must be symbol 0 and only there");
        if (s.kind != UDLM_SYM_LOCAL) {
            uint32_t off = (uint32_t)((const uint8_t *)s.name - img->symt);
            if (off < 4u + 8u * img->num_syms || off >= img->symt_size)
                return fail(err, errlen, "module symbol name outside the string area");
            if (memchr(s.name, 0, img->symt_size - off) == NULL)
                return fail(err, errlen, "module symbol name not terminated");
            if (s.name[0] == '\0')
                return fail(err, errlen, "module symbol has an empty name");
        }
        if ((s.kind == UDLM_SYM_LOCAL || s.kind == UDLM_SYM_EXPORTED) && !value_in_range(img, &s)) {
            if (err && errlen)
                snprintf(err, errlen, "module symbol %lu value 0x%lx outside its section",
                         (unsigned long)i, (unsigned long)s.value);
            return -1;
        }
    }

    for (uint32_t r = 0; r < img->num_rels; r++) {
        uint32_t target = rd32(img->rels + 8 * r);
        uint32_t sym = rd32(img->rels + 8 * r + 4);
        if (sym == 0 || sym >= img->num_syms) {
            if (err && errlen)
                snprintf(err, errlen, "module relocation %lu names bad symbol %lu",
                         (unsigned long)r, (unsigned long)sym);
            return -1;
        }
        if (target >= img->num_lot) {
            /* Data relocation: word (target - num_lot) of the data section. */
            uint32_t word = target - img->num_lot;
            if (word >= img->data_size / 4u) {
                if (err && errlen)
                    snprintf(err, errlen, "module relocation %lu targets slot %lu outside LOT and data",
                             (unsigned long)r, (unsigned long)target);
                return -1;
            }
        }
    }
    return 0;
}

uint32_t udlm_ram_size(const udlm_image_t *img)
{
    return align8(4u * img->num_lot) + align8(img->data_size + img->bss_size) + align8(img->code_size);
}

static uint32_t addr_of(const void *p)
{
    /* Modules run on a 32-bit target; on a 64-bit host (unit tests) only the
     * low half is kept, which is enough to check offsets. */
    return (uint32_t)(uintptr_t)p;
}

static uint32_t export_address(const udlm_image_t *img, const udlm_module_t *mod, const char *name)
{
    udlm_sym_t s;
    for (uint32_t i = 1; i < img->num_syms; i++) {
        udlm_symbol(img, i, &s);
        if (s.kind == UDLM_SYM_EXPORTED && s.in_code && strcmp(s.name, name) == 0)
            return (addr_of(mod->code) + s.value) | 1u;
    }
    return 0;
}

int udlm_load(const udlm_image_t *img, void *ram, uint32_t ram_len, udlm_resolve_fn resolve,
              udlm_module_t *mod, char *err, uint32_t errlen)
{
    uint8_t *base = (uint8_t *)ram;
    udlm_sym_t name;

    memset(mod, 0, sizeof(*mod));
    if (((uintptr_t)ram & 7u) != 0)
        return fail(err, errlen, "module RAM not 8-byte aligned");
    if (ram_len < udlm_ram_size(img))
        return fail(err, errlen, "not enough RAM for the module");

    mod->lot_count = img->num_lot;
    mod->data_size = img->data_size;
    mod->bss_size = img->bss_size;
    mod->code_size = img->code_size;
    mod->ram_size = udlm_ram_size(img);
    mod->lot = (uint32_t *)base;
    mod->data = base + align8(4u * img->num_lot);
    mod->code = mod->data + align8(img->data_size + img->bss_size);

    udlm_symbol(img, 0, &name);
    snprintf(mod->name, sizeof(mod->name), "%s", name.name);

    memset(mod->lot, 0, 4u * img->num_lot);
    memcpy(mod->data, img->data, img->data_size);
    memset(mod->data + img->data_size, 0, img->bss_size);
    memcpy(mod->code, img->code, img->code_size);

    for (uint32_t r = 0; r < img->num_rels; r++) {
        uint32_t target = rd32(img->rels + 8 * r);
        udlm_sym_t s;
        uint32_t value;

        udlm_symbol(img, rd32(img->rels + 8 * r + 4), &s);
        if (s.kind == UDLM_SYM_EXTERN) {
            value = resolve ? resolve(s.name) : 0;
            if (value == 0) {
                if (err && errlen)
                    snprintf(err, errlen, "unknown import '%s'", s.name);
                return -1;
            }
        } else if (s.in_code) {
            value = addr_of(mod->code) + s.value;
        } else {
            value = addr_of(mod->data) + s.value;
        }
        if (target < img->num_lot) {
            mod->lot[target] = value;
        } else {
            uint8_t *w = mod->data + 4u * (target - img->num_lot);
            memcpy(w, &value, 4);
        }
    }

    mod->setup = export_address(img, mod, "setup");
    mod->loop = export_address(img, mod, "loop");
    mod->on_input = export_address(img, mod, "on_input");
    mod->on_quit = export_address(img, mod, "on_quit");
    if (!mod->setup)
        return fail(err, errlen, "module has no 'setup' export");
    if (!mod->loop)
        return fail(err, errlen, "module has no 'loop' export");
    return 0;
}
