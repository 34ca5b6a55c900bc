/* What a scan of one file produces: the streams it read (members), the
 * distinct globals each stream names, and findings. Python turns the
 * globals into policy findings; everything else is decided here. */
#ifndef AISB_REPORT_H
#define AISB_REPORT_H

#include "aisb.h"

enum {
    SEV_INFO = 0,
    SEV_SUSPICIOUS = 1,
    SEV_ERROR = 2,
    SEV_MALICIOUS = 3,
};

/* Ways a global was used; a bit set per global. */
enum {
    USE_REDUCE = 1 << 0,
    USE_NEWOBJ = 1 << 1,
    USE_NEWOBJ_EX = 1 << 2,
    USE_OBJ = 1 << 3,
    USE_INST = 1 << 4,
    USE_BUILD = 1 << 5,        /* BUILD on an object the global made */
    USE_METHOD = 1 << 6,       /* APPEND(S)/SETITEM(S)/ADDITEMS on an object the global made */
    USE_STACK_GLOBAL = 1 << 7, /* named by STACK_GLOBAL rather than GLOBAL/INST */
    USE_PROTO_LT3 = 1 << 8,    /* named while the protocol was < 3 (Python 2 names are mapped) */
    USE_PROTO_GE3 = 1 << 9,
};

typedef struct {
    size_t name_off, name_len;    /* in strings */
    size_t format_off, format_len;
    uint64_t file_offset;         /* where the member's bytes start in the file, when stored plainly */
    uint64_t size;                /* bytes of the member's content */
    int parent;                   /* enclosing member, or -1 */
} aisb_member;

typedef struct {
    int member;
    size_t module_off, module_len;
    size_t name_off, name_len;
    uint64_t first_offset;
    uint32_t count;
    uint32_t uses;                /* USE_* */
    uint8_t first_opcode;
} aisb_global;

typedef struct {
    const char *rule;             /* static string */
    int severity;
    int member;                   /* -1: the file itself */
    int global;                   /* index into globals, or -1 */
    uint64_t offset;
    size_t msg_off, msg_len;
} aisb_finding;

typedef struct {
    aisb_vec members;
    aisb_vec globals;
    aisb_vec findings;
    aisb_buf strings;
    uint32_t *gindex;             /* open-addressing table of global indices + 1 */
    size_t gindex_cap;
    size_t max_findings;
    size_t dropped_findings;      /* findings beyond max_findings: counted, not stored */
    int dropped_worst;            /* the worst severity among the dropped findings */
    size_t max_globals;           /* distinct globals kept per file; more is a scan-limit error */
    int globals_capped;
    int worst;                    /* highest severity seen, dropped ones included */
    int oom;                      /* an allocation failed: the report is incomplete */
    size_t nested_budget;         /* bytes nested readings (frame-hidden, embedded) may still read */
    int nested_capped;            /* ... and they ran out: reported once */
} aisb_report;

void aisb_report_init(aisb_report *rep);

/* Findings from here on are only counted: callers skip composing messages. */
static inline int
aisb_report_full(const aisb_report *rep)
{
    return rep->findings.len >= rep->max_findings;
}
void aisb_report_free(aisb_report *rep);

int aisb_report_member(aisb_report *rep, const char *name, size_t name_len, const char *format,
                       uint64_t file_offset, uint64_t size, int parent);
void aisb_report_set_format(aisb_report *rep, int member, const char *format);

/* Record a use of module.name in a member; returns the global's index, -1
 * when out of memory, or AISB_GLOBALS_CAPPED past max_globals. */
#define AISB_GLOBALS_CAPPED (-2)
int aisb_report_global(aisb_report *rep, int member, aisb_slice module, aisb_slice name,
                       uint64_t offset, uint8_t opcode, uint32_t uses);
void aisb_report_global_use(aisb_report *rep, int global, uint32_t uses);
/* The index of module.name in a member, or -1. */
int aisb_report_find_global(const aisb_report *rep, int member, aisb_slice module, aisb_slice name);

void aisb_report_finding(aisb_report *rep, const char *rule, int severity, int member, int global,
                         uint64_t offset, const char *fmt, ...) AISB_PRINTF(7, 8);

static inline aisb_slice
aisb_report_str(const aisb_report *rep, size_t off, size_t len)
{
    return aisb_slice_make(rep->strings.data + off, len);
}

#endif
