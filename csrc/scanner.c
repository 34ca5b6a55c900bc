#include "scanner.h"

#include "formats.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- value representation ----
 * An sv is 0 (no value) or one of:
 *   tag 0: a reference to a value record (tuples, lists, dicts, call results, ...)
 *   tag 1: a small integer
 *   tag 2: an immediate kind (None, True, False, a float, the empty tuple, ...)
 *   tag 3: a value the stream itself holds, named by where it is: a UTF-8
 *          string or a bytes literal (by the offset of its opcode, decoded
 *          again when someone asks), or a global (by its report index).
 * Records exist only for values with structure, so opcode-dense input costs
 * a few bytes per opcode at most. */
#define SV_TAG(v) ((v) & 3u)
#define SV_REF_TAG 0u
#define SV_INT_TAG 1u
#define SV_IMM_TAG 2u
#define SV_LAZY_TAG 3u
#define SV_MAKE_REF(i) ((sv)((uint64_t)(i) + 1) << 2)
#define SV_REF_INDEX(v) (((v) >> 2) - 1)
#define SV_MAKE_IMM(k) (((sv)(k) << 2) | SV_IMM_TAG)
#define SV_SMALL_MIN (-((int64_t)1 << 61))
#define SV_SMALL_MAX (((int64_t)1 << 61) - 1)
enum { LAZY_STR = 0, LAZY_BYTES = 1, LAZY_GLOBAL = 2 };
#define SV_MAKE_LAZY(sub, payload) (((sv)(payload) << 4) | ((sv)(sub) << 2) | SV_LAZY_TAG)
#define SV_LAZY_SUB(v) (((v) >> 2) & 3u)
#define SV_LAZY_PAYLOAD(v) ((v) >> 4)

enum {
    VF_ARENA = 1,     /* a string's a is a pointer to its decoded text (in decoded), b its length */
    VF_BIG_TEXT = 2,  /* an SV_BIGINT spelled in text (INT, LONG), not LONG1/LONG4 bytes */
    VF_STATE = 4,     /* an SV_RESULT a BUILD gave state: b is a REC_PAIR of (args, state) */
};

typedef struct {
    uint8_t kind;
    uint8_t text;      /* SV_STR: PK_TEXT_*; SV_RESULT: the calling opcode */
    uint16_t flags;
    int32_t global;    /* SV_GLOBAL/SV_RESULT: report global, -1 when unknown */
    uint64_t a;        /* STR/BYTES: offset | TUPLE: first kid | LIST/DICT/SET: head node + 1 | RESULT/PERSID: inner sv */
    uint64_t b;        /* STR/BYTES: length | TUPLE: count | LIST/DICT/SET: tail node + 1 | RESULT: args (see VF_STATE) */
} vrec;

/* Records no stack entry refers to: the (args, state) of a built RESULT.
 * Kept out of vrec, which holds one per container or call: 24 bytes, not 32. */
enum { REC_PAIR = 0x40 };

typedef struct {
    sv v;
    uint64_t next;     /* node index + 1, 0 at the end */
} vnode;

typedef struct {
    uint64_t key;
    sv v;              /* 0: empty slot */
} memo_slot;

struct scanner {
    aisb_report *rep;
    const uint8_t *buf;
    size_t len;
    scan_ctx ctx;
    pk_reader rd;
    int proto;
    aisb_vec vals;     /* vrec */
    aisb_vec kids;     /* sv, tuple items */
    aisb_vec nodes;    /* vnode, list/dict/set items */
    aisb_vec stack;    /* sv */
    aisb_vec marks;    /* size_t stack heights */
    aisb_vec persids;  /* sv */
    sv *dense;         /* memo indices below dense_cap */
    size_t dense_cap;
    memo_slot *memo;   /* the rest, hashed */
    size_t memo_cap;
    size_t memo_sparse;
    size_t memo_count; /* distinct indices in use: MEMOIZE's next index */
    size_t dense_hi;   /* dense[0, dense_hi) may hold entries of the current pickle */
    aisb_vec decoded;  /* char *: one block per decoded string, freed at the end */
    int forced;        /* opcode for scanner_run to start with, its argument at pos (or -1) */
    int pickles;       /* complete pickles scanner_run_all read */
    int oom;
};

static const char *
kind_name(int kind)
{
    switch (kind) {
    case SV_NONE: return "None";
    case SV_TRUE: case SV_FALSE: return "bool";
    case SV_INT: case SV_BIGINT: return "int";
    case SV_FLOAT: return "float";
    case SV_STR: return "str";
    case SV_BYTES: return "bytes";
    case SV_BYTEARRAY: return "bytearray";
    case SV_TUPLE: return "tuple";
    case SV_LIST: return "list";
    case SV_DICT: return "dict";
    case SV_SET: return "set";
    case SV_FROZENSET: return "frozenset";
    case SV_GLOBAL: return "global";
    case SV_RESULT: return "call result";
    case SV_PERSID: return "persistent object";
    default: return "unknown value";
    }
}

/* ---- construction and teardown ---- */

scanner *
scanner_new(aisb_report *rep, const uint8_t *buf, size_t len, const scan_ctx *ctx)
{
    scanner *sc = calloc(1, sizeof *sc);
    if (sc == NULL)
        return NULL;
    sc->rep = rep;
    sc->buf = buf;
    sc->len = len;
    sc->ctx = *ctx;
    aisb_vec_init(&sc->vals, sizeof(vrec));
    aisb_vec_init(&sc->kids, sizeof(sv));
    aisb_vec_init(&sc->nodes, sizeof(vnode));
    aisb_vec_init(&sc->stack, sizeof(sv));
    aisb_vec_init(&sc->marks, sizeof(size_t));
    aisb_vec_init(&sc->persids, sizeof(sv));
    aisb_vec_init(&sc->decoded, sizeof(char *));
    sc->forced = -1;
    return sc;
}

void
scanner_free(scanner *sc)
{
    if (sc == NULL)
        return;
    aisb_vec_free(&sc->vals);
    aisb_vec_free(&sc->kids);
    aisb_vec_free(&sc->nodes);
    aisb_vec_free(&sc->stack);
    aisb_vec_free(&sc->marks);
    aisb_vec_free(&sc->persids);
    for (size_t i = 0; i < sc->decoded.len; i++)
        free(AISB_VEC_AT(&sc->decoded, char *, i));
    aisb_vec_free(&sc->decoded);
    free(sc->memo);
    aisb_big_free(sc->dense, sc->dense_cap * sizeof *sc->dense);
    free(sc);
}

static vrec *
rec(const scanner *sc, sv v)
{
    return &AISB_VEC_AT(&sc->vals, vrec, SV_REF_INDEX(v));
}

static sv
new_rec(scanner *sc, int kind, vrec **out)
{
    vrec *r = aisb_vec_push_raw(&sc->vals, 1);
    if (r == NULL) {
        sc->oom = 1;
        return 0;
    }
    r->kind = (uint8_t)kind;
    r->text = 0;
    r->flags = 0;
    r->global = -1;
    r->a = r->b = 0;
    if (out)
        *out = r;
    return SV_MAKE_REF(sc->vals.len - 1);
}

int
sv_kind(const scanner *sc, sv v)
{
    switch (SV_TAG(v)) {
    case SV_INT_TAG: return SV_INT;
    case SV_IMM_TAG: return (int)(v >> 2);
    case SV_LAZY_TAG:
        switch (SV_LAZY_SUB(v)) {
        case LAZY_STR: return SV_STR;
        case LAZY_BYTES: return SV_BYTES;
        default: return SV_GLOBAL;
        }
    default: return v ? rec(sc, v)->kind : 0;
    }
}

/* The argument of the opcode at `offset`, which decoded fine once before. */
static aisb_slice
lazy_slice(const scanner *sc, sv v)
{
    pk_reader r;
    pk_op op;
    pk_error err;
    pk_reader_init(&r, sc->buf, sc->len, (size_t)SV_LAZY_PAYLOAD(v));
    if (pk_decode(&r, &op, &err) < 0)
        return aisb_slice_make(sc->buf, 0);
    return op.s;
}

/* ---- findings ---- */

static int
fail(scanner *sc, const pk_op *op, const char *fmt, ...) AISB_PRINTF(3, 4);

static int
fail(scanner *sc, const pk_op *op, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!sc->ctx.quiet_errors)
        aisb_report_finding(sc->rep, "parse-error", SEV_ERROR, sc->ctx.member, -1, op->offset,
                            "%s at offset %zu: %s", pk_opcode_name(op->code) ? pk_opcode_name(op->code) : "opcode",
                            op->offset, msg);
    return -1;
}

static void
describe_global(scanner *sc, int g, char *out, size_t cap)
{
    if (aisb_report_full(sc->rep)) {
        out[0] = 0;  /* the finding it is for will only be counted */
        return;
    }
    if (g < 0) {
        snprintf(out, cap, "an unresolved global");
        return;
    }
    aisb_global *gl = &AISB_VEC_AT(&sc->rep->globals, aisb_global, g);
    aisb_buf b = {0};
    aisb_buf_put_escaped(&b, (const uint8_t *)sc->rep->strings.data + gl->module_off, gl->module_len, 80);
    aisb_buf_put(&b, ".", 1);
    aisb_buf_put_escaped(&b, (const uint8_t *)sc->rep->strings.data + gl->name_off, gl->name_len, 80);
    snprintf(out, cap, "%s", b.data ? b.data : "?");
    aisb_buf_free(&b);
}

/* ---- the stack, with CPython's mark fence ---- */

static size_t
fence(const scanner *sc)
{
    return sc->marks.len ? AISB_VEC_AT(&sc->marks, size_t, sc->marks.len - 1) : 0;
}

static int
push(scanner *sc, sv v)
{
    sv *slot = aisb_vec_push_raw(&sc->stack, 1);
    if (slot == NULL || v == 0) {
        sc->oom = 1;
        return -1;
    }
    *slot = v;
    return 0;
}

static int
underflow(scanner *sc, const pk_op *op)
{
    return fail(sc, op, sc->marks.len ? "could not find MARK" : "unpickling stack underflow");
}

static int
pop(scanner *sc, const pk_op *op, sv *out)
{
    if (sc->stack.len <= fence(sc))
        return underflow(sc, op);
    *out = AISB_VEC_AT(&sc->stack, sv, --sc->stack.len);
    return 0;
}

static int
top(scanner *sc, const pk_op *op, sv *out)
{
    if (sc->stack.len <= fence(sc))
        return underflow(sc, op);
    *out = AISB_VEC_AT(&sc->stack, sv, sc->stack.len - 1);
    return 0;
}

/* marker(): pop the innermost mark, returning the stack height it recorded. */
static int
marker(scanner *sc, const pk_op *op, size_t *mark)
{
    if (sc->marks.len == 0)
        return fail(sc, op, "could not find MARK");
    *mark = AISB_VEC_AT(&sc->marks, size_t, --sc->marks.len);
    return 0;
}

static sv *
stack_at(scanner *sc, size_t i)
{
    return &AISB_VEC_AT(&sc->stack, sv, i);
}

/* ---- the memo ----
 * Picklers number memo entries 0, 1, 2, ...: those live in a dense array.
 * Indices far beyond the count in use (LONG_BINPUT 4294967295) go to a
 * hash table, so a sparse index cannot make the array huge. */

static uint64_t
mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* A key lives in exactly one place: the dense array or the hash table. */
static sv *
sparse_find(const scanner *sc, uint64_t key)
{
    if (sc->memo_sparse == 0)
        return NULL;
    size_t j = mix(key) & (sc->memo_cap - 1);
    while (sc->memo[j].v) {
        if (sc->memo[j].key == key)
            return &sc->memo[j].v;
        j = (j + 1) & (sc->memo_cap - 1);
    }
    return NULL;
}

static sv *
memo_find(const scanner *sc, uint64_t key)
{
    if (key < sc->dense_cap && sc->dense[key])
        return &sc->dense[key];
    return sparse_find(sc, key);
}

/* Memo keys this far past twice the entries so far still go in the dense
 * array; keeping it small bounds what resetting the array costs a stream of
 * tiny pickles. Keys beyond go in the hash table. */
#define MEMO_SLACK 64

static int
grow_sparse(scanner *sc)
{
    size_t cap = sc->memo_cap ? sc->memo_cap * 2 : 64;
    memo_slot *t = calloc(cap, sizeof *t);
    if (t == NULL)
        return -1;
    for (size_t i = 0; i < sc->memo_cap; i++) {
        if (!sc->memo[i].v)
            continue;
        size_t j = mix(sc->memo[i].key) & (cap - 1);
        while (t[j].v)
            j = (j + 1) & (cap - 1);
        t[j] = sc->memo[i];
    }
    free(sc->memo);
    sc->memo = t;
    sc->memo_cap = cap;
    return 0;
}

/* pickle.load makes a new Unpickler, and so a new memo, for each pickle:
 * forget what earlier pickles stored (at the cost of what they stored). */
static void
memo_reset(scanner *sc)
{
    /* Bounded by this pickle's own memo: the array only grows for keys
     * below 2 * entries + MEMO_SLACK. */
    if (sc->dense_hi)
        memset(sc->dense, 0, sc->dense_hi * sizeof *sc->dense);
    sc->dense_hi = 0;
    free(sc->memo);
    sc->memo = NULL;
    sc->memo_cap = 0;
    sc->memo_sparse = 0;
    sc->memo_count = 0;
}

/* Widen the dense array to hold `key`, moving sparse entries it now covers.
 * Rare (a doubling), so kept out of memo_put's hot path. */
static __attribute__((noinline)) int
memo_grow_dense(scanner *sc, uint64_t key)
{
    size_t cap = sc->dense_cap ? sc->dense_cap : MEMO_SLACK;
    while (cap <= key)
        cap *= 2;
    sv *d = aisb_big_resize(sc->dense, sc->dense_cap * sizeof *d, cap * sizeof *d);
    if (d == NULL) {
        sc->oom = 1;
        return -1;
    }
    memset(d + sc->dense_cap, 0, (cap - sc->dense_cap) * sizeof *d);
    sc->dense = d;
    sc->dense_cap = cap;
    /* Entries that were sparse may now belong to the array. */
    for (size_t i = 0; i < sc->memo_cap; i++) {
        if (sc->memo[i].v && sc->memo[i].key < cap) {
            d[sc->memo[i].key] = sc->memo[i].v;
            if (sc->memo[i].key >= sc->dense_hi)
                sc->dense_hi = sc->memo[i].key + 1;
            sc->memo[i].v = 0;
            sc->memo_sparse--;
        }
    }
    if (sc->memo_cap) {
        /* rebuild the hash table without the moved entries (tombstone-free) */
        memo_slot *old = sc->memo;
        size_t oldcap = sc->memo_cap;
        sc->memo = NULL;
        sc->memo_cap = 0;
        size_t keep = sc->memo_sparse;
        sc->memo_sparse = 0;
        for (size_t i = 0; keep && i < oldcap; i++) {
            if (!old[i].v)
                continue;
            if ((sc->memo_sparse + 1) * 2 > sc->memo_cap && grow_sparse(sc) < 0) {
                free(old);
                sc->oom = 1;
                return -1;
            }
            size_t j = mix(old[i].key) & (sc->memo_cap - 1);
            while (sc->memo[j].v)
                j = (j + 1) & (sc->memo_cap - 1);
            sc->memo[j] = old[i];
            sc->memo_sparse++;
        }
        free(old);
    }
    return 0;
}

static int
memo_put(scanner *sc, uint64_t key, sv v)
{
    /* A key far past this pickle's own entries goes in the hash table even
     * when an earlier pickle grew the array that far: what memo_reset
     * clears stays proportional to this pickle. */
    uint64_t near = 2 * (uint64_t)sc->memo_count + MEMO_SLACK;
    if (key >= sc->dense_cap && key < near && memo_grow_dense(sc, key) < 0)
        return -1;
    if (key < sc->dense_cap && key < near) {
        if (sc->dense[key]) {
            sc->dense[key] = v;
            return 0;
        }
        sv *old = sparse_find(sc, key);
        if (old) {
            *old = v;
            return 0;
        }
        if (key >= sc->dense_hi)
            sc->dense_hi = key + 1;
        sc->dense[key] = v;
        sc->memo_count++;
        return 0;
    }
    sv *hit = memo_find(sc, key);
    if (hit) {
        *hit = v;
        return 0;
    }
    if ((sc->memo_sparse + 1) * 2 > sc->memo_cap && grow_sparse(sc) < 0) {
        sc->oom = 1;
        return -1;
    }
    size_t j = mix(key) & (sc->memo_cap - 1);
    while (sc->memo[j].v)
        j = (j + 1) & (sc->memo_cap - 1);
    sc->memo[j].key = key;
    sc->memo[j].v = v;
    sc->memo_sparse++;
    sc->memo_count++;
    return 0;
}

/* ---- strings ---- */

static int
latin1_to_utf8(aisb_buf *out, aisb_slice s)
{
    for (size_t i = 0; i < s.n; i++) {
        uint8_t c = s.p[i];
        uint8_t two[2] = {(uint8_t)(0xc0 | (c >> 6)), (uint8_t)(0x80 | (c & 0x3f))};
        if (c < 0x80 ? aisb_buf_put(out, &c, 1) < 0 : aisb_buf_put(out, two, 2) < 0)
            return -1;
    }
    return 0;
}

int
sv_text(scanner *sc, sv v, aisb_slice *out)
{
    if (SV_TAG(v) == SV_LAZY_TAG && SV_LAZY_SUB(v) == LAZY_STR) {
        *out = lazy_slice(sc, v);  /* validated UTF-8 when it was decoded */
        return 0;
    }
    if (SV_TAG(v) != SV_REF_TAG || !v || rec(sc, v)->kind != SV_STR)
        return -1;
    vrec *r = rec(sc, v);
    if (!(r->flags & VF_ARENA) && r->text != PK_TEXT_UTF8) {
        aisb_slice raw = aisb_slice_make(sc->buf + r->a, (size_t)r->b);
        aisb_buf text = {0};
        int rc;
        if (r->text == PK_TEXT_ESCAPED) {
            /* The unpickler turns the escaped bytes into str with its
             * encoding; for names only ASCII can matter, so keep UTF-8 when
             * valid and fall back to latin-1 like the 'latin1' encoding. */
            aisb_buf tmp = {0};
            rc = aisb_escape_decode(raw.p, raw.n, &tmp);
            if (rc == 0) {
                aisb_slice d = aisb_slice_make(tmp.data, tmp.len);
                rc = aisb_utf8_valid(d.p, d.n, 0) ? aisb_buf_put(&text, d.p, d.n) : latin1_to_utf8(&text, d);
            }
            aisb_buf_free(&tmp);
        }
        else if (r->text == PK_TEXT_RAWESC)
            rc = aisb_raw_unicode_escape_decode(raw.p, raw.n, &text);
        else
            rc = aisb_utf8_valid(raw.p, raw.n, 0) ? aisb_buf_put(&text, raw.p, raw.n) : latin1_to_utf8(&text, raw);
        if (rc == 0 && text.data == NULL)
            rc = aisb_buf_put(&text, "", 0);
        /* Each decoded text keeps its own block, so slices handed out
         * earlier stay valid however many more are decoded. */
        char **slot = rc == 0 ? aisb_vec_push_raw(&sc->decoded, 1) : NULL;
        if (slot == NULL) {
            aisb_buf_free(&text);
            sc->oom = 1;
            return -1;
        }
        *slot = text.data;
        r->flags |= VF_ARENA;
        r->a = (uint64_t)(uintptr_t)text.data;
        r->b = text.len;
    }
    if (r->flags & VF_ARENA)
        *out = aisb_slice_make((const uint8_t *)(uintptr_t)r->a, (size_t)r->b);
    else
        *out = aisb_slice_make(sc->buf + r->a, (size_t)r->b);
    return 0;
}

int
sv_bytes(const scanner *sc, sv v, aisb_slice *out)
{
    if (SV_TAG(v) == SV_LAZY_TAG && SV_LAZY_SUB(v) == LAZY_BYTES) {
        *out = lazy_slice(sc, v);
        return 0;
    }
    if (SV_TAG(v) != SV_REF_TAG || !v)
        return -1;
    vrec *r = rec(sc, v);
    if (r->kind != SV_BYTES && r->kind != SV_BYTEARRAY && !(r->kind == SV_STR && r->text == PK_TEXT_8BIT))
        return -1;
    *out = aisb_slice_make(sc->buf + r->a, (size_t)r->b);
    return 0;
}

int
sv_int(const scanner *sc, sv v, int64_t *out)
{
    (void)sc;
    if (SV_TAG(v) == SV_INT_TAG) {
        *out = (int64_t)v >> 2;
        return 0;
    }
    if (SV_TAG(v) == SV_IMM_TAG && (v >> 2) == SV_FALSE) {
        *out = 0;
        return 0;
    }
    if (SV_TAG(v) == SV_IMM_TAG && (v >> 2) == SV_TRUE) {
        *out = 1;
        return 0;
    }
    return -1;
}

size_t
sv_items(const scanner *sc, sv v, sv *out, size_t cap)
{
    if (SV_TAG(v) == SV_IMM_TAG && (v >> 2) == SV_TUPLE)
        return 0;  /* the empty tuple */
    if (SV_TAG(v) != SV_REF_TAG || !v)
        return 0;
    vrec *r = rec(sc, v);
    if (r->kind == SV_TUPLE) {
        for (size_t i = 0; i < r->b && i < cap; i++)
            out[i] = AISB_VEC_AT(&sc->kids, sv, r->a + i);
        return (size_t)r->b;
    }
    if (r->kind == SV_LIST || r->kind == SV_SET || r->kind == SV_FROZENSET || r->kind == SV_DICT) {
        size_t i = 0;
        for (uint64_t n = r->a; n; n = AISB_VEC_AT(&sc->nodes, vnode, n - 1).next, i++)
            if (i < cap)
                out[i] = AISB_VEC_AT(&sc->nodes, vnode, n - 1).v;
        return i;
    }
    return 0;
}

int
sv_dict_get(scanner *sc, sv v, const char *key, sv *out)
{
    if (SV_TAG(v) != SV_REF_TAG || !v || rec(sc, v)->kind != SV_DICT)
        return -1;
    int found = -1;
    for (uint64_t n = rec(sc, v)->a; n; ) {
        vnode k = AISB_VEC_AT(&sc->nodes, vnode, n - 1);
        if (!k.next)
            break;
        vnode val = AISB_VEC_AT(&sc->nodes, vnode, k.next - 1);
        aisb_slice t;
        if (sv_text(sc, k.v, &t) == 0 && aisb_slice_eq(t, key)) {
            *out = val.v;
            found = 0;  /* later keys win, as in a dict */
        }
        n = val.next;
    }
    return found;
}

int
sv_global(const scanner *sc, sv v)
{
    if (SV_TAG(v) == SV_LAZY_TAG)
        return SV_LAZY_SUB(v) == LAZY_GLOBAL ? (int)SV_LAZY_PAYLOAD(v) - 1 : -1;
    if (SV_TAG(v) != SV_REF_TAG || !v)
        return -1;
    vrec *r = rec(sc, v);
    return (r->kind == SV_GLOBAL || r->kind == SV_RESULT) ? r->global : -1;
}

int
sv_inner(const scanner *sc, sv v, sv *out)
{
    if (SV_TAG(v) != SV_REF_TAG || !v)
        return -1;
    vrec *r = rec(sc, v);
    if (r->kind != SV_RESULT && r->kind != SV_PERSID)
        return -1;
    *out = (sv)r->a;
    return 0;
}

int
sv_args(const scanner *sc, sv v, sv *out)
{
    if (SV_TAG(v) != SV_REF_TAG || !v || rec(sc, v)->kind != SV_RESULT)
        return -1;
    const vrec *r = rec(sc, v);
    *out = r->flags & VF_STATE ? (sv)rec(sc, r->b)->a : (sv)r->b;
    return 0;
}

int
sv_global_is(const scanner *sc, sv v, const char *dotted)
{
    int g = sv_global(sc, v);
    if (g < 0)
        return -1;
    const aisb_global *gl = &AISB_VEC_AT(&sc->rep->globals, aisb_global, g);
    size_t n = strlen(dotted);
    const char *s = sc->rep->strings.data;
    if (n != gl->module_len + 1 + gl->name_len)
        return -1;
    if (memcmp(dotted, s + gl->module_off, gl->module_len) != 0 || dotted[gl->module_len] != '.' ||
        memcmp(dotted + gl->module_len + 1, s + gl->name_off, gl->name_len) != 0)
        return -1;
    return 0;
}

int
sv_state(const scanner *sc, sv v, sv *out)
{
    if (SV_TAG(v) != SV_REF_TAG || !v || rec(sc, v)->kind != SV_RESULT || !(rec(sc, v)->flags & VF_STATE))
        return -1;
    *out = (sv)rec(sc, rec(sc, v)->b)->b;
    return 0;
}

/* Accumulate the digits of an already validated PyLong spelling. */
static int
text_int128(aisb_slice line, __int128 *out)
{
    size_t i = 0, n = line.n;
    const uint8_t *s = line.p;
    const uint8_t *z = memchr(s, 0, n);
    if (z)
        n = (size_t)(z - s);
    while (i < n && (s[i] == ' ' || (s[i] >= 9 && s[i] <= 13)))
        i++;
    int neg = 0, base = 10;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    if (i + 1 < n && s[i] == '0') {
        uint8_t p = (uint8_t)(s[i + 1] | 0x20);
        base = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 10;
        if (base != 10)
            i += 2;
    }
    unsigned __int128 mag = 0, limit = (unsigned __int128)1 << 127;
    for (; i < n; i++) {
        uint8_t c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'z' ? (c | 0x20) - 'a' + 10 : 99;
        if (c == '_')
            continue;
        if (d >= base)
            break;
        if (mag > (limit - (unsigned)d) / (unsigned)base)
            return -1;
        mag = mag * (unsigned)base + (unsigned)d;
    }
    if (mag == limit && !neg)
        return -1;
    *out = neg ? -(__int128)(mag - 1) - 1 : (__int128)mag;
    return 0;
}

int
sv_int128(const scanner *sc, sv v, __int128 *out)
{
    int64_t small;
    if (sv_int(sc, v, &small) == 0) {
        *out = small;
        return 0;
    }
    if (SV_TAG(v) != SV_REF_TAG || !v || rec(sc, v)->kind != SV_BIGINT)
        return -1;
    vrec *r = rec(sc, v);
    aisb_slice sp = aisb_slice_make(sc->buf + r->a, (size_t)r->b);
    if (r->flags & VF_BIG_TEXT) {
        /* LONG's trailing 'L' is cut where CPython cuts it. */
        if (sp.n >= 2 && sp.p[sp.n - 2] == 'L')
            sp.n -= 2;
        return text_int128(sp, out);
    }
    if (sp.n > 16)
        return -1;
    unsigned __int128 u = 0;
    for (size_t i = sp.n; i-- > 0;)
        u = (u << 8) | sp.p[i];
    if (sp.n && sp.n < 16 && (sp.p[sp.n - 1] & 0x80))
        u |= ~(unsigned __int128)0 << (8 * sp.n);
    *out = (__int128)u;
    return 0;
}

void
scanner_set_persistent_load(scanner *sc, int on)
{
    sc->ctx.persistent_load = on;
}

void
scanner_set_module_persids(scanner *sc, int on)
{
    sc->ctx.module_persids = on;
}

int
scanner_member(const scanner *sc)
{
    return sc->ctx.member;
}

const uint8_t *
scanner_buffer(const scanner *sc, size_t *len)
{
    *len = sc->len;
    return sc->buf;
}

size_t
scanner_persids(const scanner *sc, const sv **ids)
{
    *ids = (const sv *)sc->persids.data;
    return sc->persids.len;
}

int
scanner_pickles(const scanner *sc)
{
    return sc->pickles;
}

int
scanner_protocol(const scanner *sc)
{
    return sc->proto;
}

/* ---- building values ---- */

static int
push_imm(scanner *sc, int kind)
{
    return push(sc, SV_MAKE_IMM(kind));
}

/* Integers that don't fit an immediate keep their spelling: LONG1/LONG4
 * bytes or the text line, for sv_int128 to read when someone asks. */
static int
push_int(scanner *sc, const aisb_pyint *x, aisb_slice spelling, int text)
{
    if (!x->big && x->value >= SV_SMALL_MIN && x->value <= SV_SMALL_MAX)
        return push(sc, ((sv)(uint64_t)x->value << 2) | SV_INT_TAG);
    vrec *r;
    sv v = new_rec(sc, SV_BIGINT, &r);
    if (!v)
        return -1;
    r->flags = text ? VF_BIG_TEXT : 0;
    r->a = (uint64_t)(spelling.p - sc->buf);
    r->b = spelling.n;
    return push(sc, v);
}

static int
push_slice(scanner *sc, int kind, int text, const pk_op *op)
{
    if (kind == SV_STR && text == PK_TEXT_UTF8)
        return push(sc, SV_MAKE_LAZY(LAZY_STR, op->offset));
    if (kind == SV_BYTES)
        return push(sc, SV_MAKE_LAZY(LAZY_BYTES, op->offset));
    vrec *r;
    sv v = new_rec(sc, kind, &r);
    if (!v)
        return -1;
    r->text = (uint8_t)text;
    r->a = (uint64_t)(op->s.p - sc->buf);
    r->b = op->s.n;
    return push(sc, v);
}

/* Pop the items above `mark` into a new tuple record. */
static int
make_tuple(scanner *sc, size_t mark, sv *out)
{
    size_t n = sc->stack.len - mark;
    if (n == 0) {
        *out = SV_MAKE_IMM(SV_TUPLE);
        return 0;
    }
    size_t first = sc->kids.len;
    sv *dst = aisb_vec_push_raw(&sc->kids, n);
    vrec *r;
    sv v = dst ? new_rec(sc, SV_TUPLE, &r) : 0;
    if (!v) {
        sc->oom = 1;
        return -1;
    }
    memcpy(dst, stack_at(sc, mark), n * sizeof(sv));
    r->a = first;
    r->b = n;
    sc->stack.len = mark;
    *out = v;
    return 0;
}

/* Link n >= 1 items to the end of a container's list, as one run of nodes. */
static int
append_nodes(scanner *sc, sv container, const sv *items, size_t n)
{
    vnode *nd = aisb_vec_push_raw(&sc->nodes, n);
    if (nd == NULL) {
        sc->oom = 1;
        return -1;
    }
    uint64_t first = sc->nodes.len - n + 1;  /* index + 1 of nd[0] */
    for (size_t i = 0; i < n; i++) {
        nd[i].v = items[i];
        nd[i].next = first + i + 1;
    }
    nd[n - 1].next = 0;
    vrec *r = rec(sc, container);
    if (r->b)
        AISB_VEC_AT(&sc->nodes, vnode, r->b - 1).next = first;
    else
        r->a = first;
    r->b = first + n - 1;
    return 0;
}

static int
new_container(scanner *sc, int kind, sv *out)
{
    *out = new_rec(sc, kind, NULL);
    return *out ? 0 : -1;
}

/* Add stack items [from, len) to a container the scanner made, or note the
 * method call the unpickler would make on anything else. */
static int
add_items(scanner *sc, const pk_op *op, sv target, size_t from, int want_kind)
{
    int kind = sv_kind(sc, target);
    if (kind == want_kind) {
        /* (no pointer into an empty stack: its array may not exist yet) */
        size_t n = sc->stack.len - from;
        return n ? append_nodes(sc, target, stack_at(sc, from), n) : 0;
    }
    if (kind == SV_GLOBAL) {
        char name[200];
        describe_global(sc, sv_global(sc, target), name, sizeof name);
        aisb_report_finding(sc->rep, "mutate-global", SEV_MALICIOUS, sc->ctx.member, sv_global(sc, target),
                            op->offset, "%s at offset %zu modifies the global %s itself",
                            pk_opcode_name(op->code), op->offset, name);
        return 0;
    }
    if (kind == SV_RESULT) {
        /* A method of an object made by the global: fine when the class is allowed. */
        aisb_report_global_use(sc->rep, sv_global(sc, target), USE_METHOD);
        return 0;
    }
    if (kind == SV_PERSID || kind == SV_UNKNOWN) {
        aisb_report_finding(sc->rep, "method-call", SEV_SUSPICIOUS, sc->ctx.member, -1, op->offset,
                            "%s at offset %zu calls a method of a %s", pk_opcode_name(op->code), op->offset,
                            kind_name(kind));
        return 0;
    }
    /* Literal containers of another kind: CPython either accepts (list item
     * assignment) or raises; nothing runs either way. */
    return 0;
}

/* ---- globals and calls ---- */

static uint32_t
proto_use(const scanner *sc)
{
    return sc->proto < 3 ? USE_PROTO_LT3 : USE_PROTO_GE3;
}

/* A global already reported as unknowable: later uses add no findings. */
static int
push_unresolved_global(scanner *sc)
{
    return push(sc, SV_MAKE_LAZY(LAZY_GLOBAL, 0));
}

static int
push_global(scanner *sc, const pk_op *op, aisb_slice module, aisb_slice name, uint32_t uses)
{
    int g = aisb_report_global(sc->rep, sc->ctx.member, module, name, op->offset, op->code, uses | proto_use(sc));
    if (g == AISB_GLOBALS_CAPPED)
        return push_unresolved_global(sc);
    if (g < 0) {
        sc->oom = 1;
        return -1;
    }
    return push(sc, SV_MAKE_LAZY(LAZY_GLOBAL, (uint64_t)g + 1));
}

/* torch's legacy persistent_load returns the class of a ('module', cls,
 * source_file, source) id: what the file names there is what gets called. */
static sv
through_persid(scanner *sc, sv v)
{
    sv pid, items[2];
    aisb_slice tag;
    if (!sc->ctx.module_persids || sv_kind(sc, v) != SV_PERSID || sv_inner(sc, v, &pid) < 0 ||
        sv_items(sc, pid, items, 2) < 2 || sv_text(sc, items[0], &tag) < 0 || !aisb_slice_eq(tag, "module") ||
        sv_kind(sc, items[1]) != SV_GLOBAL)
        return v;
    return items[1];
}

/* The bytes a call's single argument holds: a bytes literal, or protocol
 * 2's _codecs.encode(text, 'latin1') spelling of one. */
static int
bytes_argument(scanner *sc, sv args, aisb_buf *tmp, aisb_slice *out)
{
    sv item[2], inner;
    aisb_slice text, enc;
    if (sv_items(sc, args, item, 2) != 1)
        return -1;
    if (sv_bytes(sc, item[0], out) == 0 && sv_kind(sc, item[0]) != SV_STR)
        return 0;
    if (sv_kind(sc, item[0]) != SV_RESULT || sv_global_is(sc, item[0], "_codecs.encode") != 0 ||
        sv_args(sc, item[0], &inner) < 0 || sv_items(sc, inner, item, 2) != 2 || sv_text(sc, item[0], &text) < 0 ||
        sv_text(sc, item[1], &enc) < 0 || !(aisb_slice_eq(enc, "latin1") || aisb_slice_eq(enc, "latin-1")))
        return -1;
    for (size_t i = 0; i < text.n; i++) {
        /* UTF-8 back to the code points U+0000..U+00FF, one byte each */
        uint8_t c = text.p[i], b = c;
        if (c >= 0x80) {
            if ((c != 0xc2 && c != 0xc3) || i + 1 >= text.n)
                return -1;
            b = (uint8_t)(((c & 0x03) << 6) | (text.p[++i] & 0x3f));
        }
        if (aisb_buf_put(tmp, &b, 1) < 0)
            return -1;
    }
    *out = aisb_slice_make(tmp->data ? (const uint8_t *)tmp->data : (const uint8_t *)"", tmp->len);
    return 0;
}

/* torch.storage._load_from_bytes(b) is torch.load of b: the pickled form of a
 * tensor (pickle.dumps(tensor)). Scan b as the file it is, so the global can
 * be allowed exactly when what it loads is clean. */
static void
nested_torch_file(scanner *sc, const pk_op *op, sv args)
{
    aisb_buf tmp = {0};
    aisb_slice data;
    if (bytes_argument(sc, args, &tmp, &data) < 0) {
        aisb_report_finding(sc->rep, "unresolved-call", SEV_MALICIOUS, sc->ctx.member, -1, op->offset,
                            "%s at offset %zu calls torch.storage._load_from_bytes on something that is not a "
                            "bytes literal, so what it loads cannot be checked",
                            pk_opcode_name(op->code), op->offset);
        aisb_buf_free(&tmp);
        return;
    }
    if (sc->ctx.depth >= 2) {
        aisb_report_finding(sc->rep, "scan-limit", SEV_ERROR, sc->ctx.member, -1, op->offset,
                            "torch file nested too deep at offset %zu was not read", op->offset);
        aisb_buf_free(&tmp);
        return;
    }
    char name[96];
    snprintf(name, sizeof name, "load_from_bytes@%zu", op->offset);
    const char *fmt = aisb_sniff(data.p, data.n);
    int m = aisb_report_member(sc->rep, name, strlen(name), fmt, 0, data.n, sc->ctx.member);
    if (m >= 0) {
        aisb_limits lim = {1ULL << 31, 4};
        aisb_scan_content(sc->rep, m, fmt, data.p, data.n, &lim, sc->ctx.depth + 1);
    }
    aisb_buf_free(&tmp);
}

/* Record a call of `callee` by op and push what it returns. */
static int
call(scanner *sc, const pk_op *op, sv callee, sv args, uint32_t use)
{
    callee = through_persid(sc, callee);
    int kind = sv_kind(sc, callee);
    if (kind == SV_GLOBAL && sv_global_is(sc, callee, "torch.storage._load_from_bytes") == 0)
        nested_torch_file(sc, op, args);
    int g = -1;
    if (kind == SV_GLOBAL) {
        g = sv_global(sc, callee);
        aisb_report_global_use(sc->rep, g, use);
    }
    else {
        char what[240] = "";
        if (aisb_report_full(sc->rep))
            ;  /* only counted: no message to compose */
        else if (kind == SV_RESULT && sv_global(sc, callee) >= 0) {
            char name[200];
            describe_global(sc, sv_global(sc, callee), name, sizeof name);
            snprintf(what, sizeof what, "the result of calling %s", name);
        }
        else
            snprintf(what, sizeof what, "a %s", kind_name(kind));
        aisb_report_finding(sc->rep, "unresolved-call", SEV_MALICIOUS, sc->ctx.member, -1, op->offset,
                            "%s at offset %zu calls %s, not a named global: the target cannot be checked",
                            pk_opcode_name(op->code), op->offset, what);
    }
    vrec *r;
    sv v = new_rec(sc, SV_RESULT, &r);
    if (!v)
        return -1;
    r->global = g;
    r->a = callee;
    r->b = args;
    r->text = op->code;
    return push(sc, v);
}

/* ---- opcode handlers ---- */

static int
load_stack_global(scanner *sc, const pk_op *op)
{
    sv name, module;
    if (pop(sc, op, &name) < 0 || pop(sc, op, &module) < 0)
        return -1;
    aisb_slice m, n;
    if (sv_kind(sc, module) == SV_STR && sv_kind(sc, name) == SV_STR) {
        /* Copy both names out: the report's string table may move as the
         * global is recorded. */
        aisb_buf tmp = {0};
        int rc = -1;
        size_t mlen = 0;
        if (sv_text(sc, module, &m) == 0 && aisb_buf_put(&tmp, m.p, m.n) == 0) {
            mlen = m.n;
            if (sv_text(sc, name, &n) == 0 && aisb_buf_put(&tmp, n.p, n.n) == 0)
                rc = 0;
        }
        if (rc < 0) {
            aisb_buf_free(&tmp);
            sc->oom = 1;
            return -1;
        }
        rc = push_global(sc, op, aisb_slice_make(tmp.data, mlen), aisb_slice_make(tmp.data + mlen, tmp.len - mlen),
                         USE_STACK_GLOBAL);
        aisb_buf_free(&tmp);
        return rc;
    }
    aisb_report_finding(sc->rep, "unresolved-global", SEV_MALICIOUS, sc->ctx.member, -1, op->offset,
                        "STACK_GLOBAL at offset %zu takes its module from a %s and its name from a %s: "
                        "the global cannot be known before it runs",
                        op->offset, kind_name(sv_kind(sc, module)), kind_name(sv_kind(sc, name)));
    return push_unresolved_global(sc);
}

static int
load_ext(scanner *sc, const pk_op *op)
{
    aisb_report_finding(sc->rep, "ext-opcode", SEV_MALICIOUS, sc->ctx.member, -1, op->offset,
                        "%s at offset %zu fetches global number %lld from copyreg's extension registry, "
                        "which is process state the file cannot be checked against",
                        pk_opcode_name(op->code), op->offset, (long long)op->n);
    return push_unresolved_global(sc);
}

static int
load_reduce(scanner *sc, const pk_op *op)
{
    sv args, callable;
    if (pop(sc, op, &args) < 0 || pop(sc, op, &callable) < 0)
        return -1;
    return call(sc, op, callable, args, USE_REDUCE);
}

static int
load_newobj(scanner *sc, const pk_op *op, int with_kwargs)
{
    sv kwargs, args, cls;
    if (with_kwargs && pop(sc, op, &kwargs) < 0)
        return -1;
    if (pop(sc, op, &args) < 0 || pop(sc, op, &cls) < 0)
        return -1;
    return call(sc, op, cls, args, with_kwargs ? USE_NEWOBJ_EX : USE_NEWOBJ);
}

static int
load_obj(scanner *sc, const pk_op *op)
{
    size_t mark = 0;
    if (marker(sc, op, &mark) < 0)
        return -1;
    if (sc->stack.len < mark + 1 || mark < fence(sc))
        return underflow(sc, op);
    sv cls = *stack_at(sc, mark), args;
    if (make_tuple(sc, mark + 1, &args) < 0)
        return -1;
    sc->stack.len = mark;
    return call(sc, op, cls, args, USE_OBJ);
}

static int
load_inst(scanner *sc, const pk_op *op)
{
    size_t mark = 0;
    if (marker(sc, op, &mark) < 0)
        return -1;
    if (mark < fence(sc))
        return underflow(sc, op);
    sv args;
    if (make_tuple(sc, mark, &args) < 0)
        return -1;
    /* INST names its class in its argument and calls it at once. */
    if (push_global(sc, op, op->s, op->s2, USE_INST) < 0)
        return -1;
    sv cls = AISB_VEC_AT(&sc->stack, sv, --sc->stack.len);
    return call(sc, op, cls, args, USE_INST);
}

static int
load_build(scanner *sc, const pk_op *op)
{
    sv state, inst;
    if (sc->stack.len < fence(sc) + 2)
        return underflow(sc, op);
    if (pop(sc, op, &state) < 0 || top(sc, op, &inst) < 0)
        return -1;
    int kind = sv_kind(sc, inst);
    if (kind == SV_RESULT) {
        if (rec(sc, inst)->flags & VF_STATE)
            rec(sc, rec(sc, inst)->b)->b = state;
        else {
            vrec *pair;
            sv p = new_rec(sc, REC_PAIR, &pair);  /* may move the records: inst's is looked up after */
            if (!p)
                return -1;
            pair->a = rec(sc, inst)->b;
            pair->b = state;
            rec(sc, inst)->b = p;
            rec(sc, inst)->flags |= VF_STATE;
        }
        aisb_report_global_use(sc->rep, sv_global(sc, inst), USE_BUILD);
        if (sc->ctx.on_build) {
            size_t pos = sc->rd.pos;
            if (sc->ctx.on_build(sc->ctx.hook_data, sc, inst, state, &pos) < 0)
                return -1;
            if (pos != sc->rd.pos) {
                pk_reader_seek(&sc->rd, pos);
            }
        }
        return 0;
    }
    if (kind == SV_GLOBAL) {
        char name[200];
        describe_global(sc, sv_global(sc, inst), name, sizeof name);
        aisb_report_finding(sc->rep, "build-on-global", SEV_MALICIOUS, sc->ctx.member, sv_global(sc, inst),
                            op->offset,
                            "BUILD at offset %zu sets attributes on %s itself (a module, class or function), "
                            "so later lookups of it can resolve to something else",
                            op->offset, name);
        return 0;
    }
    aisb_report_finding(sc->rep, "build-on-non-instance", SEV_SUSPICIOUS, sc->ctx.member, -1, op->offset,
                        "BUILD at offset %zu targets a %s, not an object made by a class",
                        op->offset, kind_name(kind));
    return 0;
}

static int
load_persid(scanner *sc, const pk_op *op)
{
    sv pid;
    if (op->code == PK_BINPERSID) {
        if (pop(sc, op, &pid) < 0)
            return -1;
    }
    else {
        vrec *r;
        pid = new_rec(sc, SV_STR, &r);
        if (!pid)
            return -1;
        r->text = PK_TEXT_8BIT;
        r->a = (uint64_t)(op->s.p - sc->buf);
        r->b = op->s.n;
    }
    if (!sc->ctx.persistent_load && sc->ctx.quiet_errors)
        return -1;  /* a probe reads like pickle.load, which stops here */
    if (!sc->ctx.persistent_load)
        aisb_report_finding(sc->rep, "persistent-id", SEV_ERROR, sc->ctx.member, -1, op->offset,
                            "%s at offset %zu asks for a persistent_load function, which this kind of file "
                            "is not loaded with",
                            pk_opcode_name(op->code), op->offset);
    sv *slot = aisb_vec_push(&sc->persids, 1);
    if (slot == NULL) {
        sc->oom = 1;
        return -1;
    }
    *slot = pid;
    vrec *r;
    sv v = new_rec(sc, SV_PERSID, &r);
    if (!v)
        return -1;
    r->a = pid;
    return push(sc, v);
}

static int
load_get(scanner *sc, const pk_op *op)
{
    sv *m = memo_find(sc, (uint64_t)op->n);
    if (m == NULL)
        return fail(sc, op, "memo value not found at index %lld", (long long)op->n);
    return push(sc, *m);
}

static int
load_put(scanner *sc, const pk_op *op, int memoize)
{
    sv v;
    if (top(sc, op, &v) < 0)
        return -1;
    return memo_put(sc, memoize ? sc->memo_count : (uint64_t)op->n, v);
}

static int
load_counted_tuple(scanner *sc, const pk_op *op, size_t n)
{
    sv t;
    if (sc->stack.len < n || sc->stack.len - n < fence(sc))
        return underflow(sc, op);
    if (make_tuple(sc, sc->stack.len - n, &t) < 0)
        return -1;
    return push(sc, t);
}

static int
load_marked(scanner *sc, const pk_op *op)
{
    size_t mark = 0;
    sv v;
    if (marker(sc, op, &mark) < 0)
        return -1;
    if (mark > sc->stack.len || mark < fence(sc))
        return underflow(sc, op);
    switch (op->code) {
    case PK_TUPLE:
        if (make_tuple(sc, mark, &v) < 0)
            return -1;
        return push(sc, v);
    case PK_POP_MARK:
        sc->stack.len = mark;
        return 0;
    case PK_DICT:
        if ((sc->stack.len - mark) % 2)
            return fail(sc, op, "odd number of items for DICT");
        /* fall through */
    default: {
        int kind = op->code == PK_DICT ? SV_DICT : op->code == PK_LIST ? SV_LIST : SV_FROZENSET;
        if (new_container(sc, kind, &v) < 0 || add_items(sc, op, v, mark, kind) < 0)
            return -1;
        sc->stack.len = mark;
        return push(sc, v);
    }
    }
}

/* APPEND, SETITEM: the target sits `n` items below the top. */
static int
load_add_top(scanner *sc, const pk_op *op, size_t n, int want_kind)
{
    size_t len = sc->stack.len;
    if (len < n + 1 || len - n <= fence(sc))
        return underflow(sc, op);
    size_t x = len - n;
    if (add_items(sc, op, *stack_at(sc, x - 1), x, want_kind) < 0)
        return -1;
    sc->stack.len = x;
    return 0;
}

/* APPENDS, SETITEMS, ADDITEMS: the target sits just below the mark. */
static int
load_add_marked(scanner *sc, const pk_op *op, int want_kind)
{
    size_t mark = 0;
    if (marker(sc, op, &mark) < 0)
        return -1;
    size_t len = sc->stack.len;
    if (mark > len || mark <= fence(sc))
        return underflow(sc, op);
    if (mark == len)
        return 0;
    if (want_kind == SV_DICT && (len - mark) % 2)
        return fail(sc, op, "odd number of items for SETITEMS");
    if (add_items(sc, op, *stack_at(sc, mark - 1), mark, want_kind) < 0)
        return -1;
    sc->stack.len = mark;
    return 0;
}

static int
load_pop(scanner *sc, const pk_op *op)
{
    size_t len = sc->stack.len;
    if (sc->marks.len && AISB_VEC_AT(&sc->marks, size_t, sc->marks.len - 1) == len) {
        sc->marks.len--;
        return 0;
    }
    if (len <= fence(sc))
        return underflow(sc, op);
    sc->stack.len--;
    return 0;
}

static int
load_mark(scanner *sc)
{
    size_t *m = aisb_vec_push_raw(&sc->marks, 1);
    if (m == NULL) {
        sc->oom = 1;
        return -1;
    }
    *m = sc->stack.len;
    return 0;
}

static int scan_region(scanner *parent, size_t start, size_t end, const char *label, int quiet);

static void scan_alternate(scanner *parent, uint8_t code, size_t pos);

/* Opcodes that run past their frame: report, then follow the reading an
 * older C unpickler makes of a file, which re-reads the straddling
 * argument from the frame's end: that is where hidden opcodes live. */
static void
frame_findings(scanner *sc, const pk_op *op)
{
    if (op->frame_flags & PK_FRAME_OVERLAP)
        aisb_report_finding(sc->rep, "frame-violation", SEV_MALICIOUS, sc->ctx.member, -1, op->offset,
                            "FRAME at offset %zu begins before the frame from offset %zu ends: unpicklers "
                            "disagree about what such a stream contains (CPython gh-154848)",
                            op->offset, op->frame_start);
    if (op->frame_flags & PK_FRAME_SPAN)
        aisb_report_finding(sc->rep, "frame-violation", SEV_SUSPICIOUS, sc->ctx.member, -1, op->offset,
                            "%s at offset %zu begins in the FRAME from offset %zu and ends after it; every "
                            "unpickler reads it the same way, but no pickler writes frames like this",
                            pk_opcode_name(op->code), op->offset, op->frame_start);
    if (op->frame_flags & PK_FRAME_STRADDLE) {
        aisb_report_finding(sc->rep, "frame-violation", SEV_MALICIOUS, sc->ctx.member, -1, op->offset,
                            "%s at offset %zu runs past the end of the FRAME from offset %zu: CPython before "
                            "3.13.15/3.14.7 can execute bytes that other tools read as data (gh-154848)",
                            pk_opcode_name(op->code), op->offset, op->frame_start);
        if (op->alt)
            scan_alternate(sc, op->code, op->alt_pos);
    }
}

/* Bytes that are themselves a pickle: a nested loader may run them later. */
static void
embedded_pickle(scanner *sc, const pk_op *op)
{
    if (op->s.n < 2 || pk_opcode_name(op->s.p[0]) == NULL || op->s.p[op->s.n - 1] != PK_STOP)
        return;
    size_t start = (size_t)(op->s.p - sc->buf);
    scan_region(sc, start, start + op->s.n, "embedded", 0);
}

static int
dispatch(scanner *sc, const pk_op *op)
{
    switch (op->code) {
    case PK_MARK: return load_mark(sc);
    case PK_STOP: return 1;
    case PK_POP: return load_pop(sc, op);
    case PK_POP_MARK:
    case PK_TUPLE:
    case PK_LIST:
    case PK_DICT:
    case PK_FROZENSET: return load_marked(sc, op);
    case PK_DUP: {
        sv v;
        return top(sc, op, &v) < 0 ? -1 : push(sc, v);
    }
    case PK_FLOAT:
    case PK_BINFLOAT: return push_imm(sc, SV_FLOAT);
    case PK_INT:
    case PK_LONG:
        if (op->digit_limit)
            aisb_report_finding(sc->rep, "parse-error", SEV_ERROR, sc->ctx.member, -1, op->offset,
                                "%s at offset %zu has %zu decimal digits: CPython refuses more than %d "
                                "(int_max_str_digits), so the unpickler stops here",
                                pk_opcode_name(op->code), op->offset, op->pyint.digits, AISB_MAX_STR_DIGITS);
        if (op->is_bool)
            return push_imm(sc, op->pyint.value ? SV_TRUE : SV_FALSE);
        return push_int(sc, &op->pyint, op->s, 1);
    case PK_BININT:
    case PK_BININT1:
    case PK_BININT2: {
        aisb_pyint x = {.value = op->n, .negative = op->n < 0};
        return push_int(sc, &x, op->s, 0);
    }
    case PK_LONG1:
    case PK_LONG4: {
        /* Little-endian two's complement; small values stay usable. */
        aisb_pyint x = {.value = 0};
        if (op->s.n > 8)
            x.big = 1;
        else if (op->s.n > 0) {
            uint64_t u = aisb_le(op->s.p, (int)op->s.n);
            if (op->s.n < 8 && (op->s.p[op->s.n - 1] & 0x80))
                u |= ~(uint64_t)0 << (8 * op->s.n);
            x.value = (int64_t)u;
        }
        return push_int(sc, &x, op->s, 0);
    }
    case PK_NONE: return push_imm(sc, SV_NONE);
    case PK_NEWTRUE: return push_imm(sc, SV_TRUE);
    case PK_NEWFALSE: return push_imm(sc, SV_FALSE);
    case PK_PERSID:
    case PK_BINPERSID: return load_persid(sc, op);
    case PK_REDUCE: return load_reduce(sc, op);
    case PK_STRING:
    case PK_BINSTRING:
    case PK_SHORT_BINSTRING:
    case PK_UNICODE:
    case PK_BINUNICODE:
    case PK_SHORT_BINUNICODE:
    case PK_BINUNICODE8:
        if (op->text == PK_TEXT_8BIT)
            embedded_pickle(sc, op);
        return push_slice(sc, SV_STR, op->text, op);
    case PK_BINBYTES:
    case PK_SHORT_BINBYTES:
    case PK_BINBYTES8:
        embedded_pickle(sc, op);
        return push_slice(sc, SV_BYTES, 0, op);
    case PK_BYTEARRAY8:
        embedded_pickle(sc, op);
        return push_slice(sc, SV_BYTEARRAY, 0, op);
    case PK_APPEND: return load_add_top(sc, op, 1, SV_LIST);
    case PK_APPENDS: return load_add_marked(sc, op, SV_LIST);
    case PK_SETITEM: return load_add_top(sc, op, 2, SV_DICT);
    case PK_SETITEMS: return load_add_marked(sc, op, SV_DICT);
    case PK_ADDITEMS: return load_add_marked(sc, op, SV_SET);
    case PK_BUILD: return load_build(sc, op);
    case PK_GLOBAL: return push_global(sc, op, op->s, op->s2, 0);
    case PK_STACK_GLOBAL: return load_stack_global(sc, op);
    case PK_INST: return load_inst(sc, op);
    case PK_OBJ: return load_obj(sc, op);
    case PK_NEWOBJ: return load_newobj(sc, op, 0);
    case PK_NEWOBJ_EX: return load_newobj(sc, op, 1);
    case PK_EMPTY_DICT:
    case PK_EMPTY_LIST:
    case PK_EMPTY_SET: {
        sv v;
        int kind = op->code == PK_EMPTY_DICT ? SV_DICT : op->code == PK_EMPTY_LIST ? SV_LIST : SV_SET;
        return new_container(sc, kind, &v) < 0 ? -1 : push(sc, v);
    }
    case PK_EMPTY_TUPLE: return push_imm(sc, SV_TUPLE);
    case PK_TUPLE1: return load_counted_tuple(sc, op, 1);
    case PK_TUPLE2: return load_counted_tuple(sc, op, 2);
    case PK_TUPLE3: return load_counted_tuple(sc, op, 3);
    case PK_GET:
    case PK_BINGET:
    case PK_LONG_BINGET: return load_get(sc, op);
    case PK_PUT:
    case PK_BINPUT:
    case PK_LONG_BINPUT: return load_put(sc, op, 0);
    case PK_MEMOIZE: return load_put(sc, op, 1);
    case PK_EXT1:
    case PK_EXT2:
    case PK_EXT4: return load_ext(sc, op);
    case PK_PROTO:
        sc->proto = (int)op->n;
        return 0;
    case PK_FRAME: return 0;
    case PK_NEXT_BUFFER:
        aisb_report_finding(sc->rep, "out-of-band-buffer", SEV_ERROR, sc->ctx.member, -1, op->offset,
                            "NEXT_BUFFER at offset %zu refers to data outside the file", op->offset);
        return push_imm(sc, SV_UNKNOWN);
    case PK_READONLY_BUFFER: {
        sv v;
        return top(sc, op, &v);
    }
    default:
        return fail(sc, op, "unknown opcode");
    }
}

int
scanner_run(scanner *sc, size_t pos, size_t *end, sv *result)
{
    pk_reader_init(&sc->rd, sc->buf, sc->len, pos);
    sc->rd.forced = sc->forced;
    sc->forced = -1;
    sc->proto = 0;
    if (!sc->ctx.shared_memo)
        memo_reset(sc);
    sc->stack.len = 0;
    sc->marks.len = 0;
    for (;;) {
        pk_op op;
        pk_error err;
        if (pk_decode(&sc->rd, &op, &err) < 0) {
            if (!sc->ctx.quiet_errors)
                aisb_report_finding(sc->rep, "parse-error", SEV_ERROR, sc->ctx.member, -1, err.offset,
                                    "offset %zu: %s", err.offset, err.message);
            return -1;
        }
        if (op.frame_flags)
            frame_findings(sc, &op);
        int rc = dispatch(sc, &op);
        if (sc->oom) {
            aisb_report_finding(sc->rep, "scan-limit", SEV_ERROR, sc->ctx.member, -1, op.offset,
                                "out of memory while scanning at offset %zu", op.offset);
            return -1;
        }
        if (rc < 0)
            return -1;
        if (rc == 1) {
            if (pop(sc, &op, result) < 0)
                return -1;
            *end = sc->rd.pos;
            return 0;
        }
    }
}

int
scanner_run_all(scanner *sc, size_t pos)
{
    size_t end;
    sv result;
    int pickles = 0;
    sc->pickles = 0;
    while (pos < sc->len) {
        if (scanner_run(sc, pos, &end, &result) < 0) {
            if (pickles > 0 && !sc->ctx.quiet_errors)
                aisb_report_finding(sc->rep, "trailing-data", SEV_ERROR, sc->ctx.member, -1, pos,
                                    "%zu bytes after the pickle that ends at offset %zu are not a complete "
                                    "pickle", sc->len - pos, pos);
            return -1;
        }
        pickles++;
        sc->pickles++;
        pos = end;
    }
    if (pickles == 0) {
        if (!sc->ctx.quiet_errors)
            aisb_report_finding(sc->rep, "parse-error", SEV_ERROR, sc->ctx.member, -1, pos, "empty pickle stream");
        return -1;
    }
    return 0;
}

/* ---- nested scans: frame-hidden bytes and embedded pickles ---- */

#define MAX_NESTING 2

int
aisb_identifier_like(aisb_slice s)
{
    if (s.n == 0 || s.n > 200)
        return 0;
    int start = 1;
    for (size_t i = 0; i < s.n; i++) {
        uint8_t c = s.p[i];
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (c == '.' && !start)
            start = 1;
        else if (alpha || (!start && c >= '0' && c <= '9'))
            start = 0;
        else
            return 0;
    }
    return !start;
}

int
scanner_probe(const uint8_t *buf, size_t len, size_t start, int depth, size_t *end)
{
    if (start >= len || pk_opcode_name(buf[start]) == NULL)
        return PROBE_NONE;
    aisb_report scratch;
    aisb_report_init(&scratch);
    aisb_report_member(&scratch, "", 0, "pickle", 0, len, -1);
    scan_ctx ctx = {.member = 0, .depth = depth, .quiet_errors = 1};
    scanner *sc = scanner_new(&scratch, buf, len, &ctx);
    sv result;
    size_t stop = start;
    int verdict = PROBE_NONE;
    if (sc && scanner_run(sc, start, &stop, &result) == 0) {
        verdict = PROBE_COMPLETE;
        if (end)
            *end = stop;
    }
    for (size_t i = 0; verdict == PROBE_NONE && i < scratch.globals.len; i++) {
        aisb_global *g = &AISB_VEC_AT(&scratch.globals, aisb_global, i);
        if (aisb_identifier_like(aisb_report_str(&scratch, g->module_off, g->module_len)) &&
            aisb_identifier_like(aisb_report_str(&scratch, g->name_off, g->name_len)))
            verdict = PROBE_NAMES;
    }
    scanner_free(sc);
    aisb_report_free(&scratch);
    return verdict;
}

/* Whether nested readings may go on; the first refusal is an error finding,
 * since bytes some unpickler would read go unchecked. */
static int
nested_allowed(scanner *parent, size_t offset)
{
    aisb_report *rep = parent->rep;
    if (rep->nested_budget > 0)
        return 1;
    if (!rep->nested_capped) {
        rep->nested_capped = 1;
        aisb_report_finding(rep, "scan-limit", SEV_ERROR, parent->ctx.member, -1, offset,
                            "nested readings (frame-hidden opcodes, embedded pickles) at offset %zu and after "
                            "exceed four times the file's size and were not checked",
                            offset);
    }
    return 0;
}

static void
nested_spent(scanner *parent, size_t n)
{
    aisb_report *rep = parent->rep;
    rep->nested_budget -= n < rep->nested_budget ? n : rep->nested_budget;
}

static int
scan_region(scanner *parent, size_t start, size_t end, const char *label, int hidden)
{
    if (parent->ctx.depth >= MAX_NESTING || !nested_allowed(parent, start))
        return 0;
    nested_spent(parent, end - start);  /* the probe; the scan below is charged as it reads */
    /* Bytes that merely start like a pickle (random tensor data can) are
     * only reported when they are a whole pickle, ending where they end. */
    size_t stop = 0;
    if (!hidden && (scanner_probe(parent->buf, end, start, parent->ctx.depth + 1, &stop) != PROBE_COMPLETE ||
                    stop != end))
        return 0;
    char name[96];
    snprintf(name, sizeof name, "%s@%zu", label, start);
    int member = aisb_report_member(parent->rep, name, strlen(name), "pickle", 0, end - start, parent->ctx.member);
    if (member < 0)
        return -1;
    scan_ctx ctx = {.member = member, .persistent_load = parent->ctx.persistent_load,
                    .depth = parent->ctx.depth + 1, .quiet_errors = hidden};
    scanner *sub = scanner_new(parent->rep, parent->buf, end, &ctx);
    if (sub == NULL)
        return -1;
    scanner_run_all(sub, start);
    nested_spent(parent, end - start);
    scanner_free(sub);
    return 0;
}

/* The reading a file-based C unpickler makes after a straddle: opcode
 * `code` with its argument read from `pos`, then on from there. The state
 * before it is unknown, so the scan starts empty and stops quietly at the
 * first thing that makes no sense; what it names is reported. */
static void
scan_alternate(scanner *parent, uint8_t code, size_t pos)
{
    if (parent->ctx.depth >= MAX_NESTING || !nested_allowed(parent, pos))
        return;
    char name[96];
    snprintf(name, sizeof name, "hidden@%zu", pos);
    int member = aisb_report_member(parent->rep, name, strlen(name), "pickle", 0, parent->len - pos,
                                    parent->ctx.member);
    if (member < 0)
        return;
    scan_ctx ctx = {.member = member, .persistent_load = parent->ctx.persistent_load,
                    .depth = parent->ctx.depth + 1, .quiet_errors = 1};
    scanner *sub = scanner_new(parent->rep, parent->buf, parent->len, &ctx);
    if (sub == NULL)
        return;
    size_t end;
    sv result;
    sub->forced = code;
    scanner_run(sub, pos, &end, &result);
    nested_spent(parent, sub->rd.pos > pos ? sub->rd.pos - pos : 0);
    scanner_free(sub);
}
