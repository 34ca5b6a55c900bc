/* numpy .npy: magic, version, a Python-literal header dict, then the data.
 * Object arrays store a pickle as their data (numpy.load with
 * allow_pickle=True runs it); every other dtype is raw bytes whose length
 * the header fixes. The header is parsed here with a tiny literal reader,
 * bounded in size and depth like numpy's own (max_header_size = 10000). */
#include "formats.h"

#include <stdio.h>

#define NPY_MAX_HEADER 10000
#define LIT_MAX_DEPTH 32

/* ---- a reader for the Python literals numpy writes ---- */

typedef struct {
    const uint8_t *p, *end;
    int depth;
} lit;

static void
skip_ws(lit *L)
{
    while (L->p < L->end && (*L->p == ' ' || *L->p == '\t' || *L->p == '\n' || *L->p == '\r'))
        L->p++;
}

static int
eat(lit *L, char c)
{
    skip_ws(L);
    if (L->p < L->end && *L->p == (uint8_t)c) {
        L->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes (numpy never writes any). */
static int
lit_string(lit *L, aisb_slice *out)
{
    skip_ws(L);
    if (L->p >= L->end || (*L->p != '\'' && *L->p != '"'))
        return -1;
    uint8_t q = *L->p++;
    const uint8_t *start = L->p;
    while (L->p < L->end && *L->p != q) {
        if (*L->p == '\\')
            return -1;
        L->p++;
    }
    if (L->p >= L->end)
        return -1;
    *out = aisb_slice_make(start, (size_t)(L->p - start));
    L->p++;
    return 0;
}

static int
lit_int(lit *L, int64_t *out)
{
    skip_ws(L);
    int neg = 0;
    if (L->p < L->end && *L->p == '-') {
        neg = 1;
        L->p++;
    }
    const uint8_t *start = L->p;
    uint64_t v = 0;
    while (L->p < L->end && *L->p >= '0' && *L->p <= '9') {
        if (v > (uint64_t)INT64_MAX / 10)
            return -1;
        v = v * 10 + (uint64_t)(*L->p++ - '0');
    }
    if (L->p == start || v > (uint64_t)INT64_MAX)
        return -1;
    if (L->p < L->end && *L->p == 'L')  /* Python 2 longs: numpy filters them */
        L->p++;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

static int
lit_word(lit *L, const char *w)
{
    skip_ws(L);
    size_t n = strlen(w);
    if ((size_t)(L->end - L->p) >= n && memcmp(L->p, w, n) == 0) {
        L->p += n;
        return 1;
    }
    return 0;
}

/* ---- dtypes ---- */

typedef struct {
    uint64_t itemsize;
    int hasobject;
} dtype_info;

/* dtype names and one-letter type codes numpy also accepts as a descr. */
static const struct {
    const char *name;
    uint64_t size;
    int object;
} DTYPE_NAMES[] = {
    {"bool", 1, 0}, {"bool_", 1, 0}, {"object", 8, 1}, {"object_", 8, 1}, {"float16", 2, 0}, {"half", 2, 0},
    {"float32", 4, 0}, {"single", 4, 0}, {"float64", 8, 0}, {"double", 8, 0}, {"float", 8, 0},
    {"longdouble", 16, 0}, {"int8", 1, 0}, {"int16", 2, 0}, {"int32", 4, 0}, {"int64", 8, 0}, {"int", 8, 0},
    {"uint8", 1, 0}, {"uint16", 2, 0}, {"uint32", 4, 0}, {"uint64", 8, 0}, {"uint", 8, 0},
    {"complex64", 8, 0}, {"complex128", 16, 0}, {"complex", 16, 0}, {"clongdouble", 32, 0},
    {"byte", 1, 0}, {"ubyte", 1, 0}, {"short", 2, 0}, {"ushort", 2, 0}, {"intc", 4, 0}, {"uintc", 4, 0},
    {"long", 8, 0}, {"ulong", 8, 0}, {"longlong", 8, 0}, {"ulonglong", 8, 0}, {"intp", 8, 0}, {"uintp", 8, 0},
    {"?", 1, 0}, {"b", 1, 0}, {"B", 1, 0}, {"h", 2, 0}, {"H", 2, 0}, {"i", 4, 0}, {"I", 4, 0}, {"l", 8, 0},
    {"L", 8, 0}, {"q", 8, 0}, {"Q", 8, 0}, {"p", 8, 0}, {"P", 8, 0}, {"e", 2, 0}, {"f", 4, 0}, {"d", 8, 0},
    {"g", 16, 0}, {"F", 8, 0}, {"D", 16, 0}, {"G", 32, 0}, {"O", 8, 1},
};

/* A numpy type string ('<f8', '|O', '<U5', 'V16', '<M8[ns]', 'float64', ...). */
int
aisb_typestr_info(aisb_slice t, uint64_t *itemsize, int *hasobject)
{
    for (size_t k = 0; k < sizeof DTYPE_NAMES / sizeof DTYPE_NAMES[0]; k++) {
        if (aisb_slice_eq(t, DTYPE_NAMES[k].name) ||
            (t.n > 1 && (t.p[0] == '<' || t.p[0] == '>' || t.p[0] == '|' || t.p[0] == '=') &&
             aisb_slice_eq(aisb_slice_make(t.p + 1, t.n - 1), DTYPE_NAMES[k].name) && strlen(DTYPE_NAMES[k].name) == 1)) {
            *itemsize = DTYPE_NAMES[k].size;
            *hasobject = DTYPE_NAMES[k].object;
            return 0;
        }
    }
    size_t i = 0;
    if (i < t.n && (t.p[i] == '<' || t.p[i] == '>' || t.p[i] == '|' || t.p[i] == '='))
        i++;
    if (i >= t.n)
        return -1;
    uint8_t kind = t.p[i++];
    uint64_t digits = 0;
    int have = 0;
    while (i < t.n && t.p[i] >= '0' && t.p[i] <= '9') {
        if (digits > UINT32_MAX)
            return -1;
        digits = digits * 10 + (uint64_t)(t.p[i++] - '0');
        have = 1;
    }
    if (i < t.n && t.p[i] == '[' && (kind == 'M' || kind == 'm')) {
        while (i < t.n && t.p[i] != ']')
            i++;
        if (i++ >= t.n)
            return -1;
    }
    if (i != t.n)
        return -1;
    *hasobject = kind == 'O';
    switch (kind) {
    case 'b': case 'i': case 'u': case 'f': case 'c': case 'S': case 'a': case 'V':
        if (!have)
            return -1;
        *itemsize = digits;
        return 0;
    case 'U':
        if (!have)
            return -1;
        *itemsize = digits * 4;
        return 0;
    case '?':
        *itemsize = have ? digits : 1;
        return 0;
    case 'O':
    case 'M':
    case 'm':
        if (have && digits != 8)
            return -1;
        *itemsize = 8;
        return 0;
    default:
        return -1;
    }
}

static int descr(lit *L, dtype_info *out);

/* (int, int, ...) as numpy writes shapes; the product must fit. */
static int
shape_tuple(lit *L, uint64_t *count)
{
    if (!eat(L, '('))
        return -1;
    *count = 1;
    if (eat(L, ')'))
        return 0;
    for (;;) {
        int64_t d;
        if (lit_int(L, &d) < 0 || d < 0)
            return -1;
        if (d && *count > UINT64_MAX / (uint64_t)d)
            return -1;
        *count *= (uint64_t)d;
        if (eat(L, ')'))
            return 0;
        if (!eat(L, ','))
            return -1;
        if (eat(L, ')'))
            return 0;
    }
}

/* ('name', descr[, shape]) or (('title', 'name'), descr[, shape]) */
static int
field(lit *L, dtype_info *out)
{
    aisb_slice name;
    if (!eat(L, '('))
        return -1;
    if (eat(L, '(')) {
        if (lit_string(L, &name) < 0 || !eat(L, ',') || lit_string(L, &name) < 0 || !eat(L, ')'))
            return -1;
    }
    else if (lit_string(L, &name) < 0)
        return -1;
    if (!eat(L, ',') || descr(L, out) < 0)
        return -1;
    if (eat(L, ',')) {
        uint64_t n;
        if (eat(L, ')'))
            return 0;
        if (shape_tuple(L, &n) < 0 || (n && out->itemsize > UINT64_MAX / n))
            return -1;
        out->itemsize *= n;
    }
    return eat(L, ')') ? 0 : -1;
}

static int
descr(lit *L, dtype_info *out)
{
    aisb_slice s;
    if (++L->depth > LIT_MAX_DEPTH)
        return -1;
    out->itemsize = 0;
    out->hasobject = 0;
    skip_ws(L);
    int rc = -1;
    if (L->p < L->end && (*L->p == '\'' || *L->p == '"'))
        rc = lit_string(L, &s) == 0 ? aisb_typestr_info(s, &out->itemsize, &out->hasobject) : -1;
    else if (eat(L, '[')) {
        rc = 0;
        while (rc == 0 && !eat(L, ']')) {
            dtype_info f;
            if (field(L, &f) < 0 || out->itemsize > UINT64_MAX - f.itemsize) {
                rc = -1;
                break;
            }
            out->itemsize += f.itemsize;
            out->hasobject |= f.hasobject;
            if (!eat(L, ',') && !(skip_ws(L), L->p < L->end && *L->p == ']'))
                rc = -1;
        }
    }
    else if (eat(L, '(')) {
        /* (base, shape): a subarray dtype */
        uint64_t n;
        rc = descr(L, out) == 0 && eat(L, ',') && shape_tuple(L, &n) == 0 && eat(L, ')') ? 0 : -1;
        if (rc == 0 && n && out->itemsize > UINT64_MAX / n)
            rc = -1;
        if (rc == 0)
            out->itemsize *= n;
    }
    L->depth--;
    return rc;
}

typedef struct {
    dtype_info dtype;
    uint64_t count;
    int have_descr, have_order, have_shape;
} npy_header;

static int
header_dict(lit *L, npy_header *h)
{
    if (!eat(L, '{'))
        return -1;
    while (!eat(L, '}')) {
        aisb_slice key;
        if (lit_string(L, &key) < 0 || !eat(L, ':'))
            return -1;
        if (aisb_slice_eq(key, "descr") && !h->have_descr) {
            if (descr(L, &h->dtype) < 0)
                return -1;
            h->have_descr = 1;
        }
        else if (aisb_slice_eq(key, "fortran_order") && !h->have_order) {
            if (!lit_word(L, "True") && !lit_word(L, "False"))
                return -1;
            h->have_order = 1;
        }
        else if (aisb_slice_eq(key, "shape") && !h->have_shape) {
            if (shape_tuple(L, &h->count) < 0)
                return -1;
            h->have_shape = 1;
        }
        else
            return -1;  /* numpy refuses other or repeated keys */
        if (!eat(L, ',') && !(skip_ws(L), L->p < L->end && *L->p == '}'))
            return -1;
    }
    skip_ws(L);
    return (L->p == L->end && h->have_descr && h->have_order && h->have_shape) ? 0 : -1;
}

static void
npy_error(aisb_report *rep, int member, size_t offset, const char *what)
{
    aisb_report_finding(rep, "npy-header", SEV_ERROR, member, -1, offset, "numpy .npy file: %s", what);
}

void
aisb_scan_npy(aisb_report *rep, int member, const uint8_t *buf, size_t len, const aisb_limits *lim, int strict_tail)
{
    (void)lim;
    if (len < 10) {
        npy_error(rep, member, 0, "the header is truncated");
        return;
    }
    uint8_t major = buf[6];
    size_t hlen, start;
    if (major == 1) {
        hlen = (size_t)aisb_le(buf + 8, 2);
        start = 10;
    }
    else if (major == 2 || major == 3) {
        if (len < 12) {
            npy_error(rep, member, 0, "the header is truncated");
            return;
        }
        hlen = (size_t)aisb_le(buf + 8, 4);
        start = 12;
    }
    else {
        npy_error(rep, member, 6, "unknown format version");
        return;
    }
    if (hlen > NPY_MAX_HEADER || hlen > len - start) {
        npy_error(rep, member, 8, "the header is longer than numpy accepts or than the file");
        return;
    }
    npy_header h;
    memset(&h, 0, sizeof h);
    lit L = {buf + start, buf + start + hlen, 0};
    if (header_dict(&L, &h) < 0) {
        npy_error(rep, member, start, "the header is not a dict of descr, fortran_order and shape numpy would read");
        return;
    }
    size_t body = start + hlen;
    if (h.dtype.hasobject) {
        /* numpy.load(allow_pickle=True) unpickles the body with pickle.load. */
        aisb_report_set_format(rep, member, "npy-object");
        scan_ctx ctx = {.member = member};
        scanner *sc = scanner_new(rep, buf, len, &ctx);
        size_t end;
        sv result;
        if (sc && scanner_run(sc, body, &end, &result) == 0 && end != len && strict_tail) {
            aisb_report_finding(rep, "trailing-data", SEV_ERROR, member, -1, end,
                                "%zu bytes follow the pickled object array", len - end);
            scanner_run_all(sc, end);  /* name what a second pickle.load would run */
        }
        scanner_free(sc);
        return;
    }
    if (h.count && h.dtype.itemsize > UINT64_MAX / h.count) {
        npy_error(rep, member, start, "the array size overflows");
        return;
    }
    uint64_t need = h.count * h.dtype.itemsize;
    if (need > len - body)
        npy_error(rep, member, body, "the data is shorter than the header declares");
    else if (need < len - body && strict_tail)
        aisb_report_finding(rep, "trailing-data", SEV_ERROR, member, -1, body + need,
                            "%llu bytes follow the array data", (unsigned long long)(len - body - need));
}
