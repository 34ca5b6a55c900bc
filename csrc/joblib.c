/* joblib writes numpy arrays into the pickle stream itself: after the BUILD
 * of a NumpyArrayWrapper its unpickler reads the array straight from the
 * file (an optional alignment byte and padding, then the raw data), or, for
 * object arrays, a whole nested pickle. The scanner must step over exactly
 * those bytes to stay in step with joblib.load. */
#include "formats.h"

#include <stdio.h>

int aisb_typestr_info(aisb_slice t, uint64_t *itemsize, int *hasobject);

static const char *const WRAPPERS[] = {
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
};

static const char *const EXTERNAL_WRAPPERS[] = {
    "joblib.numpy_pickle_compat.NDArrayWrapper",
    "joblib.numpy_pickle_compat.ZNDArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle_compat.NDArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle_compat.ZNDArrayWrapper",
};

void
joblib_init(joblib_state *jb, aisb_report *rep, int member, const aisb_limits *lim)
{
    jb->rep = rep;
    jb->member = member;
    jb->lim = lim;
    jb->arrays = 0;
}

static int
is_one_of(scanner *sc, sv v, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (sv_global_is(sc, v, names[i]) == 0)
            return 1;
    return 0;
}

static int
fail(joblib_state *jb, size_t pos, const char *what)
{
    aisb_report_finding(jb->rep, "joblib-layout", SEV_ERROR, jb->member, -1, pos,
                        "joblib array at offset %zu: %s, so the rest of the stream cannot be read in step "
                        "with joblib.load",
                        pos, what);
    return -1;
}

/* The dtype made by numpy.dtype('f8', False, True) and its BUILD state. */
static int
dtype_of(scanner *sc, sv dtype, uint64_t *itemsize, int *hasobject)
{
    sv args, items[8], state;
    aisb_slice t;
    if (sv_global_is(sc, dtype, "numpy.dtype") != 0 || sv_args(sc, dtype, &args) < 0 ||
        sv_items(sc, args, items, 3) < 1 || sv_text(sc, items[0], &t) < 0 ||
        aisb_typestr_info(t, itemsize, hasobject) < 0)
        return -1;
    if (sv_state(sc, dtype, &state) == 0 && sv_items(sc, state, items, 8) == 8) {
        int64_t elsize, flags;
        if (sv_int(sc, items[5], &elsize) == 0 && elsize > 0)
            *itemsize = (uint64_t)elsize;
        if (sv_int(sc, items[7], &flags) == 0 && (flags & 1))
            *hasobject = 1;  /* NPY_ITEM_REFCOUNT: fields that hold objects */
    }
    return 0;
}

int
joblib_on_build(void *ud, scanner *sc, sv inst, sv state, size_t *pos)
{
    joblib_state *jb = ud;
    sv callee;
    if (sv_inner(sc, inst, &callee) < 0)
        return 0;
    if (is_one_of(sc, inst, EXTERNAL_WRAPPERS, sizeof EXTERNAL_WRAPPERS / sizeof *EXTERNAL_WRAPPERS)) {
        aisb_report_finding(jb->rep, "external-data", SEV_ERROR, jb->member, -1, *pos,
                            "an old joblib array wrapper at offset %zu loads its data from a separate file, "
                            "which was not checked",
                            *pos);
        return 0;
    }
    if (!is_one_of(sc, inst, WRAPPERS, sizeof WRAPPERS / sizeof *WRAPPERS))
        return 0;

    size_t len;
    const uint8_t *buf = scanner_buffer(sc, &len);
    sv shape, dtype, align, dims[64];
    uint64_t itemsize, count = 1;
    int hasobject;
    if (sv_dict_get(sc, state, "shape", &shape) < 0 || sv_dict_get(sc, state, "dtype", &dtype) < 0)
        return fail(jb, *pos, "the wrapper's state has no shape or dtype");
    if (dtype_of(sc, dtype, &itemsize, &hasobject) < 0)
        return fail(jb, *pos, "its dtype is not one joblib could have written");
    size_t ndim = sv_items(sc, shape, dims, 64);
    if (ndim > 64 || (sv_kind(sc, shape) != SV_TUPLE && ndim != 0))
        return fail(jb, *pos, "its shape is not a tuple of at most 64 integers");
    for (size_t i = 0; i < ndim; i++) {
        int64_t d;
        if (sv_int(sc, dims[i], &d) < 0 || d < 0 || (d && count > UINT64_MAX / (uint64_t)d))
            return fail(jb, *pos, "its shape is not a tuple of sizes");
        count *= (uint64_t)d;
    }
    jb->arrays++;

    if (hasobject) {
        /* joblib calls pickle.load on the file here: a complete nested pickle. */
        scan_ctx ctx = {.member = jb->member};
        scanner *nested = scanner_new(jb->rep, buf, len, &ctx);
        size_t end;
        sv result;
        int rc = nested ? scanner_run(nested, *pos, &end, &result) : -1;
        scanner_free(nested);
        if (rc < 0)
            return -1;
        *pos = end;
        return 0;
    }

    size_t start = *pos, p = *pos;
    int64_t alignment;
    if (sv_dict_get(sc, state, "numpy_array_alignment_bytes", &align) == 0 && sv_int(sc, align, &alignment) == 0) {
        if (p >= len)
            return fail(jb, p, "the alignment byte is missing");
        size_t padding = buf[p];
        p += 1;
        if (padding > len - p)
            return fail(jb, p, "the padding runs past the end");
        p += padding;
    }
    if (itemsize && count > UINT64_MAX / itemsize)
        return fail(jb, p, "its size overflows");
    uint64_t nbytes = count * itemsize;
    if (nbytes > len - p)
        return fail(jb, p, "its data runs past the end of the stream");
    *pos = p + (size_t)nbytes;
    /* pickle.load of the same file would read these bytes as opcodes. */
    if (*pos > start)
        aisb_probe_as_pickle(jb->rep, jb->member, buf + start, *pos - start, "joblib array");
    return 0;
}
