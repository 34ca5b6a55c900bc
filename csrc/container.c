#include "container.h"

#include "formats.h"
#include "opcodes.h"
#include "scanner.h"
#include "zip.h"

#include <stdio.h>

static int
starts_with(const uint8_t *buf, size_t len, const char *magic, size_t n)
{
    return len >= n && memcmp(buf, magic, n) == 0;
}

static int
zlib_header(const uint8_t *buf, size_t len)
{
    /* joblib and zlib.compress write 0x78; the check bits make a pickle
     * starting with 'x' impossible anyway ('x' is no opcode). */
    return len >= 2 && buf[0] == 0x78 && ((buf[0] << 8) | buf[1]) % 31 == 0;
}

static int
safetensors_header(const uint8_t *buf, size_t len)
{
    if (len < 10)
        return 0;
    uint64_t n = aisb_le(buf, 8);
    return n >= 2 && n <= len - 8 && buf[8] == '{';
}

const char *
aisb_sniff(const uint8_t *buf, size_t len)
{
    if (len == 0)
        return "empty";
    if (starts_with(buf, len, "PK\x03\x04", 4) || starts_with(buf, len, "PK\x05\x06", 4))
        return FMT_ZIP;
    if (starts_with(buf, len, "\x93NUMPY", 6))
        return FMT_NPY;
    if (starts_with(buf, len, "\x1f\x8b", 2))
        return "gzip";
    if (zlib_header(buf, len))
        return "zlib";
    if (len >= 4 && starts_with(buf, len, "BZh", 3) && buf[3] >= '1' && buf[3] <= '9')
        return "bz2";
    if (starts_with(buf, len, "\xfd" "7zXZ\x00", 6))
        return "xz";
    if (len >= 13 && buf[0] == 0x5d && buf[1] == 0 && buf[2] == 0)
        return "lzma";
    if (starts_with(buf, len, "ZF0x", 4))
        return "joblib-zf";
    if (starts_with(buf, len, "7z\xbc\xaf\x27\x1c", 6))
        return "7z";
    if (starts_with(buf, len, "Rar!\x1a\x07", 6))
        return "rar";
    if (starts_with(buf, len, "\x28\xb5\x2f\xfd", 4))
        return "zstd";
    if (starts_with(buf, len, "\x04\x22\x4d\x18", 4))
        return "lz4";
    if (aisb_tar_header_valid(buf, len))
        return FMT_TAR;
    if (safetensors_header(buf, len))
        return "safetensors";
    if (pk_opcode_name(buf[0]) != NULL)
        return FMT_PICKLE;
    return "unknown";
}

/* Text: UTF-8 without NUL or most control bytes. Nothing unpickles text
 * that fails at its first opcodes, so it holds no pickle worth a verdict. */
static int
is_text(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = buf[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f')
            return 0;
    }
    return aisb_utf8_valid(buf, len, 0);
}

/* Forget the findings of a failed first parse (text that merely starts
 * with an opcode letter), recomputing the worst severity. */
static void
drop_findings_from(aisb_report *rep, size_t keep)
{
    rep->findings.len = keep;
    rep->worst = SEV_INFO;
    for (size_t i = 0; i < keep; i++) {
        int s = AISB_VEC_AT(&rep->findings, aisb_finding, i).severity;
        if (s > rep->worst)
            rep->worst = s;
    }
}

/* ---- raw pickle files: one or more pickles, torch's legacy stream, joblib ---- */

/* Several pickles read by one Unpickler object share its memo: a later
 * pickle's memo gets then see what earlier ones stored, and MEMOIZE numbers
 * differ. That reading is scanned too, quietly (its breaks are not the
 * file's), and whatever it names that the ordinary reading did not is
 * reported under a member of its own. */
static int
finding_known(const aisb_report *rep, int member, const aisb_finding *f)
{
    for (size_t i = 0; i < rep->findings.len; i++) {
        const aisb_finding *g = &AISB_VEC_AT(&rep->findings, aisb_finding, i);
        if (g->member == member && g->offset == f->offset && strcmp(g->rule, f->rule) == 0)
            return 1;
    }
    return 0;
}

static void
scan_shared_memo(aisb_report *rep, int member, const uint8_t *buf, size_t len, const aisb_limits *lim)
{
    aisb_report alt;
    aisb_report_init(&alt);
    aisb_report_member(&alt, "", 0, FMT_PICKLE, 0, len, -1);
    joblib_state jb;
    joblib_init(&jb, &alt, 0, lim);
    scan_ctx ctx = {.member = 0, .quiet_errors = 1, .shared_memo = 1, .on_build = joblib_on_build, .hook_data = &jb};
    scanner *sc = scanner_new(&alt, buf, len, &ctx);
    if (sc)
        scanner_run_all(sc, 0);
    scanner_free(sc);

    int m = -1;
    for (size_t i = 0; i < alt.globals.len; i++) {
        const aisb_global *g = &AISB_VEC_AT(&alt.globals, aisb_global, i);
        aisb_slice mod = aisb_report_str(&alt, g->module_off, g->module_len);
        aisb_slice name = aisb_report_str(&alt, g->name_off, g->name_len);
        if (aisb_report_find_global(rep, member, mod, name) >= 0)
            continue;
        if (m < 0 && (m = aisb_report_member(rep, "shared-memo", 11, FMT_PICKLE, 0, len, member)) < 0)
            break;
        aisb_report_global(rep, m, mod, name, g->first_offset, g->first_opcode, g->uses);
    }
    for (size_t i = 0; i < alt.findings.len; i++) {
        const aisb_finding *f = &AISB_VEC_AT(&alt.findings, aisb_finding, i);
        if (f->severity < SEV_MALICIOUS || finding_known(rep, member, f))
            continue;
        if (m < 0 && (m = aisb_report_member(rep, "shared-memo", 11, FMT_PICKLE, 0, len, member)) < 0)
            break;
        aisb_slice msg = aisb_report_str(&alt, f->msg_off, f->msg_len);
        aisb_report_finding(rep, f->rule, f->severity, m, -1, f->offset, "%.*s", (int)msg.n, (const char *)msg.p);
    }
    aisb_report_free(&alt);
}

static void
scan_pickle_file(aisb_report *rep, int member, const uint8_t *buf, size_t len, const aisb_limits *lim)
{
    joblib_state jb;
    joblib_init(&jb, rep, member, lim);
    scan_ctx ctx = {.member = member, .persistent_load = 0, .on_build = joblib_on_build, .hook_data = &jb};
    scanner *sc = scanner_new(rep, buf, len, &ctx);
    if (sc == NULL) {
        rep->oom = 1;
        return;
    }
    size_t end;
    sv result;
    size_t findings_before = rep->findings.len, globals_before = rep->globals.len;
    int first = scanner_run(sc, 0, &end, &result);
    if (first < 0 && rep->globals.len == globals_before && rep->dropped_findings == 0 && is_text(buf, len)) {
        int only_parse_errors = 1;
        for (size_t i = findings_before; i < rep->findings.len; i++)
            only_parse_errors &= strcmp(AISB_VEC_AT(&rep->findings, aisb_finding, i).rule, "parse-error") == 0;
        if (only_parse_errors) {
            drop_findings_from(rep, findings_before);
            aisb_report_set_format(rep, member, "text");
        }
    }
    int legacy = 0;
    if (first == 0) {
        if ((legacy = legacy_is_magic(sc, result))) {
            aisb_report_set_format(rep, member, FMT_TORCH_LEGACY);
            legacy_scan_stream(rep, member, sc, end);
        }
        else {
            if (jb.arrays)
                aisb_report_set_format(rep, member, FMT_JOBLIB);
            if (end < len)
                scanner_run_all(sc, end);
        }
    }
    scanner_free(sc);
    if (first == 0 && end < len && !legacy)  /* torch reads each legacy pickle with a new Unpickler */
        scan_shared_memo(rep, member, buf, len, lim);
}

/* A whole pickle, STOP included, and nothing after it. */
int
aisb_is_complete_pickle(const uint8_t *buf, size_t len)
{
    size_t end = 0;
    return len > 2 && buf[0] == PK_PROTO && scanner_probe(buf, len, 0, 0, &end) == PROBE_COMPLETE && end == len;
}

int
aisb_looks_like_pickle(const uint8_t *buf, size_t len)
{
    return scanner_probe(buf, len, 0, 0, NULL) != PROBE_NONE;
}

/* Some other format's bytes may also be a pickle: pickle.load would run it.
 * Report that reading when it finds globals (polyglots); random bytes stop
 * within a few opcodes and find nothing worth naming. */
void
aisb_probe_as_pickle(aisb_report *rep, int member, const uint8_t *buf, size_t len, const char *what)
{
    if (!aisb_looks_like_pickle(buf, len))
        return;
    int m = aisb_report_member(rep, "as-pickle", 9, FMT_PICKLE, 0, len, member);
    if (m < 0)
        return;
    aisb_report_finding(rep, "polyglot", SEV_MALICIOUS, member, -1, 0,
                        "these bytes are %s, but they also read as a pickle that names globals: "
                        "pickle.load would run that reading",
                        what);
    scan_ctx ctx = {.member = m};
    scanner *sc = scanner_new(rep, buf, len, &ctx);
    size_t end;
    sv result;
    if (sc)
        scanner_run(sc, 0, &end, &result);
    scanner_free(sc);
}

/* Zip readers that accept data before the archive (Python's zipfile) open a
 * zip appended to anything; scan it too. */
static void
probe_as_zip(aisb_report *rep, int member, const uint8_t *buf, size_t len, const char *what,
             const aisb_limits *lim, int depth)
{
    zip_archive z;
    int ok = zip_open(&z, buf, len) == 0 && z.count > 0;
    zip_close(&z);
    if (!ok)
        return;
    aisb_report_finding(rep, "polyglot", SEV_MALICIOUS, member, -1, 0,
                        "these bytes are %s, but a zip archive follows: zip readers that accept data before "
                        "an archive open it",
                        what);
    int m = aisb_report_member(rep, "as-zip", 6, FMT_ZIP, 0, len, member);
    if (m >= 0)
        aisb_scan_zip(rep, m, buf, len, lim, depth + 1);
}

void
aisb_scan_content(aisb_report *rep, int member, const char *fmt, const uint8_t *buf, size_t len,
                  const aisb_limits *lim, int depth)
{
    if (strcmp(fmt, FMT_ZIP) != 0 && strcmp(fmt, "empty") != 0 && depth <= lim->max_depth)
        probe_as_zip(rep, member, buf, len, strcmp(fmt, FMT_PICKLE) == 0 ? "a pickle" : fmt, lim, depth);
    if (depth > lim->max_depth) {
        aisb_report_finding(rep, "scan-limit", SEV_ERROR, member, -1, 0,
                            "containers nest deeper than %d levels; the innermost was not read", lim->max_depth);
        return;
    }
    if (strcmp(fmt, FMT_PICKLE) == 0) {
        scan_pickle_file(rep, member, buf, len, lim);
        return;
    }
    if (strcmp(fmt, FMT_ZIP) == 0) {
        aisb_scan_zip(rep, member, buf, len, lim, depth);
        return;
    }
    if (strcmp(fmt, FMT_NPY) == 0) {
        aisb_scan_npy(rep, member, buf, len, lim, 1);
        return;
    }
    if (strcmp(fmt, FMT_TAR) == 0) {
        aisb_scan_tar(rep, member, buf, len, lim, depth);
        aisb_probe_as_pickle(rep, member, buf, len, "a tar archive");  /* a header can be a pickle too */
        return;
    }
    if (strcmp(fmt, "empty") == 0) {
        aisb_report_finding(rep, "unknown-format", SEV_ERROR, member, -1, 0, "the file is empty");
        return;
    }
    if (strcmp(fmt, "unknown") == 0 && is_text(buf, len)) {
        aisb_report_set_format(rep, member, "text");
        return;
    }
    /* Formats the C layer does not open itself. At the top level the Python
     * layer takes over compressed data and safetensors; anywhere else they
     * are unread bytes, so never clean. */
    if (depth > 0 || strcmp(fmt, "unknown") == 0 || strcmp(fmt, "7z") == 0 || strcmp(fmt, "rar") == 0 ||
        strcmp(fmt, "zstd") == 0 || strcmp(fmt, "lz4") == 0) {
        if (strcmp(fmt, "unknown") == 0)
            aisb_report_finding(rep, "unknown-format", SEV_ERROR, member, -1, 0,
                                "not a format aisbom knows (first bytes %02x %02x %02x %02x): it was not checked",
                                buf[0], len > 1 ? buf[1] : 0, len > 2 ? buf[2] : 0, len > 3 ? buf[3] : 0);
        else
            aisb_report_finding(rep, "unsupported-container", SEV_ERROR, member, -1, 0,
                                "%s data%s: aisbom cannot look inside it, so its contents were not checked", fmt,
                                depth > 0 ? " inside a container" : "");
    }
    aisb_probe_as_pickle(rep, member, buf, len, fmt);
}

void
aisb_scan_file(aisb_report *rep, const uint8_t *buf, size_t len, const aisb_limits *lim)
{
    const char *fmt = aisb_sniff(buf, len);
    /* Nested readings re-read what the outer scan read; a file full of
     * frame straddles would otherwise cost time quadratic in its size. */
    rep->nested_budget = len < SIZE_MAX / 8 ? 4 * len + ((size_t)64 << 10) : SIZE_MAX;
    int member = aisb_report_member(rep, "", 0, fmt, 0, len, -1);
    if (member < 0)
        return;
    aisb_scan_content(rep, member, fmt, buf, len, lim, 0);
}
