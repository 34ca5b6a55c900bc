#include "report.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void
aisb_report_init(aisb_report *rep)
{
    memset(rep, 0, sizeof *rep);
    aisb_vec_init(&rep->members, sizeof(aisb_member));
    aisb_vec_init(&rep->globals, sizeof(aisb_global));
    aisb_vec_init(&rep->findings, sizeof(aisb_finding));
    rep->max_findings = 1000;
    rep->max_globals = 20000;
    rep->nested_budget = SIZE_MAX;
}

void
aisb_report_free(aisb_report *rep)
{
    aisb_vec_free(&rep->members);
    aisb_vec_free(&rep->globals);
    aisb_vec_free(&rep->findings);
    aisb_buf_free(&rep->strings);
    free(rep->gindex);
    rep->gindex = NULL;
}

static int
put_string(aisb_report *rep, const void *p, size_t n, size_t *off)
{
    *off = rep->strings.len;
    if (aisb_buf_put(&rep->strings, p, n) < 0) {
        rep->oom = 1;
        return -1;
    }
    return 0;
}

int
aisb_report_member(aisb_report *rep, const char *name, size_t name_len, const char *format,
                   uint64_t file_offset, uint64_t size, int parent)
{
    aisb_member *m = aisb_vec_push(&rep->members, 1);
    if (m == NULL) {
        rep->oom = 1;
        return -1;
    }
    int index = (int)rep->members.len - 1;
    m->file_offset = file_offset;
    m->size = size;
    m->parent = parent;
    if (put_string(rep, name, name_len, &m->name_off) < 0)
        return -1;
    m->name_len = name_len;
    aisb_report_set_format(rep, index, format);
    return index;
}

void
aisb_report_set_format(aisb_report *rep, int member, const char *format)
{
    size_t off;
    if (member < 0 || put_string(rep, format, strlen(format), &off) < 0)
        return;
    aisb_member *m = &AISB_VEC_AT(&rep->members, aisb_member, member);
    m->format_off = off;
    m->format_len = strlen(format);
}

static uint64_t
hash_global(int member, aisb_slice module, aisb_slice name)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uint32_t)member;
    for (size_t i = 0; i < module.n; i++)
        h = (h ^ module.p[i]) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (size_t i = 0; i < name.n; i++)
        h = (h ^ name.p[i]) * 1099511628211ULL;
    return h;
}

static int
global_matches(const aisb_report *rep, const aisb_global *g, int member, aisb_slice module, aisb_slice name)
{
    return g->member == member && g->module_len == module.n && g->name_len == name.n &&
           memcmp(rep->strings.data + g->module_off, module.p, module.n) == 0 &&
           memcmp(rep->strings.data + g->name_off, name.p, name.n) == 0;
}

static int
grow_index(aisb_report *rep)
{
    size_t cap = rep->gindex_cap ? rep->gindex_cap * 2 : 64;
    uint32_t *t = calloc(cap, sizeof *t);
    if (t == NULL)
        return -1;
    for (size_t i = 0; i < rep->globals.len; i++) {
        aisb_global *g = &AISB_VEC_AT(&rep->globals, aisb_global, i);
        uint64_t h = hash_global(g->member, aisb_report_str(rep, g->module_off, g->module_len),
                                 aisb_report_str(rep, g->name_off, g->name_len));
        size_t j = h & (cap - 1);
        while (t[j])
            j = (j + 1) & (cap - 1);
        t[j] = (uint32_t)i + 1;
    }
    free(rep->gindex);
    rep->gindex = t;
    rep->gindex_cap = cap;
    return 0;
}

int
aisb_report_global(aisb_report *rep, int member, aisb_slice module, aisb_slice name,
                   uint64_t offset, uint8_t opcode, uint32_t uses)
{
    if ((rep->globals.len + 1) * 2 > rep->gindex_cap && grow_index(rep) < 0) {
        rep->oom = 1;
        return -1;
    }
    uint64_t h = hash_global(member, module, name);
    size_t j = h & (rep->gindex_cap - 1);
    while (rep->gindex[j]) {
        int i = (int)rep->gindex[j] - 1;
        aisb_global *g = &AISB_VEC_AT(&rep->globals, aisb_global, i);
        if (global_matches(rep, g, member, module, name)) {
            if (g->count < UINT32_MAX)
                g->count++;
            g->uses |= uses;
            return i;
        }
        j = (j + 1) & (rep->gindex_cap - 1);
    }
    if (rep->globals.len >= rep->max_globals) {
        /* No legitimate file names this many; the Python side judges each. */
        if (!rep->globals_capped) {
            rep->globals_capped = 1;
            aisb_report_finding(rep, "scan-limit", SEV_ERROR, member, -1, offset,
                                "more than %zu distinct globals; the rest were not judged", rep->max_globals);
        }
        return AISB_GLOBALS_CAPPED;
    }
    /* Copy the names first: they may point into rep->strings itself. */
    size_t moff, noff;
    aisb_buf tmp = {0};
    if (aisb_buf_put(&tmp, module.p, module.n) < 0 || aisb_buf_put(&tmp, name.p, name.n) < 0) {
        aisb_buf_free(&tmp);
        rep->oom = 1;
        return -1;
    }
    int rc = put_string(rep, tmp.data, module.n, &moff);
    if (rc == 0)
        rc = put_string(rep, tmp.data + module.n, name.n, &noff);
    aisb_buf_free(&tmp);
    aisb_global *g = rc == 0 ? aisb_vec_push(&rep->globals, 1) : NULL;
    if (g == NULL) {
        rep->oom = 1;
        return -1;
    }
    g->member = member;
    g->module_off = moff;
    g->module_len = module.n;
    g->name_off = noff;
    g->name_len = name.n;
    g->first_offset = offset;
    g->first_opcode = opcode;
    g->count = 1;
    g->uses = uses;
    rep->gindex[j] = (uint32_t)rep->globals.len;
    return (int)rep->globals.len - 1;
}

int
aisb_report_find_global(const aisb_report *rep, int member, aisb_slice module, aisb_slice name)
{
    if (rep->gindex_cap == 0)
        return -1;
    size_t j = hash_global(member, module, name) & (rep->gindex_cap - 1);
    while (rep->gindex[j]) {
        int i = (int)rep->gindex[j] - 1;
        if (global_matches(rep, &AISB_VEC_AT(&rep->globals, aisb_global, i), member, module, name))
            return i;
        j = (j + 1) & (rep->gindex_cap - 1);
    }
    return -1;
}

void
aisb_report_global_use(aisb_report *rep, int global, uint32_t uses)
{
    if (global >= 0 && (size_t)global < rep->globals.len)
        AISB_VEC_AT(&rep->globals, aisb_global, global).uses |= uses;
}

void
aisb_report_finding(aisb_report *rep, const char *rule, int severity, int member, int global,
                    uint64_t offset, const char *fmt, ...)
{
    if (severity > rep->worst)
        rep->worst = severity;
    if (rep->findings.len >= rep->max_findings) {
        rep->dropped_findings++;
        if (severity > rep->dropped_worst)
            rep->dropped_worst = severity;
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof msg)
        n = sizeof msg - 1;
    size_t off;
    if (put_string(rep, msg, (size_t)n, &off) < 0)
        return;
    aisb_finding *f = aisb_vec_push(&rep->findings, 1);
    if (f == NULL) {
        rep->oom = 1;
        return;
    }
    f->rule = rule;
    f->severity = severity;
    f->member = member;
    f->global = global;
    f->offset = offset;
    f->msg_off = off;
    f->msg_len = (size_t)n;
}
