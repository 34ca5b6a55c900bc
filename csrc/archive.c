/* Zip archives: torch checkpoints, TorchScript archives, numpy .npz and any
 * other zip. Every member is read and judged by its content: pickles are
 * scanned wherever they sit and whatever they are called; storage records
 * are raw data unless they are a complete pickle. */
#include "formats.h"
#include "zip.h"

#include <stdio.h>
#include <stdlib.h>

/* Name tests fold ASCII case, as torch's record lookup does. */
static int
ends_with(aisb_slice s, const char *suffix)
{
    size_t n = strlen(suffix);
    return s.n >= n && zip_name_eq(aisb_slice_make(s.p + s.n - n, n), aisb_slice_make(suffix, n));
}

/* "data.pkl" or "<prefix>/data.pkl" */
static int
is_record(aisb_slice name, const char *record)
{
    size_t n = strlen(record);
    if (zip_name_eq(name, aisb_slice_make(record, n)))
        return 1;
    if (name.n <= n || !ends_with(name, record) || name.p[name.n - n - 1] != '/')
        return 0;
    const uint8_t *slash = memchr(name.p, '/', name.n - n - 1);
    return slash == NULL;  /* exactly one folder above */
}

/* After "<prefix>/": the rest of the name. */
static aisb_slice
after_prefix(aisb_slice name)
{
    const uint8_t *first = memchr(name.p, '/', name.n);
    const uint8_t *after = first ? first + 1 : name.p;
    return aisb_slice_make(after, (size_t)(name.p + name.n - after));
}

/* "<prefix>/data/<key>": a storage record, raw bytes to torch. */
static int
is_storage(aisb_slice name)
{
    aisb_slice rest = after_prefix(name);
    return rest.n > 5 && zip_name_eq(aisb_slice_make(rest.p, 5), aisb_slice_make("data/", 5)) &&
           memchr(rest.p + 5, '/', rest.n - 5) == NULL;
}

static int
in_folder(aisb_slice name, const char *folder)
{
    size_t n = strlen(folder);
    aisb_slice rest = after_prefix(name);
    return rest.n > n && zip_name_eq(aisb_slice_make(rest.p, n), aisb_slice_make(folder, n));
}

static void
report_anomalies(aisb_report *rep, int m, const zip_entry *e)
{
    static const struct {
        int bit;
        const char *text;
    } KINDS[] = {
        {ZIP_NAME_MISMATCH, "its local header names it differently from the central directory"},
        {ZIP_SIZE_MISMATCH, "its local header disagrees with the central directory on sizes or method"},
        {ZIP_ENCRYPTED, "it is flagged as encrypted (bit 0x1); torch reads it as plain data regardless"},
        {ZIP_ODD_FLAGS, "it sets general-purpose flag bits zip writers do not use here"},
        {ZIP_DUPLICATE, "another member has the same name; readers disagree about which one counts"},
        {ZIP_ORPHAN, "it is a local entry the central directory does not list"},
        {ZIP_SHIFTED, "its offsets only work after accounting for bytes before the archive"},
        {ZIP_ALTERNATE, "only the 32-bit central directory lists it; the ZIP64 record points elsewhere"},
    };
    if (e->anomalies & ZIP_DIRECTORY)
        aisb_report_finding(rep, "zip-anomaly", SEV_MALICIOUS, m, -1, e->header_offset,
                            "zip member at offset %llu is marked as a directory but holds data: torch's reader "
                            "skips reading it and uses uninitialised memory instead",
                            (unsigned long long)e->header_offset);
    for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++)
        if (e->anomalies & KINDS[i].bit)
            aisb_report_finding(rep, "zip-anomaly", SEV_SUSPICIOUS, m, -1, e->header_offset,
                                "zip member at offset %llu: %s (flags 0x%04x)", (unsigned long long)e->header_offset,
                                KINDS[i].text, e->flags);
}

static void
scan_pickle_member(aisb_report *rep, int m, const uint8_t *data, size_t n, int persistent_load)
{
    aisb_report_set_format(rep, m, FMT_PICKLE);
    scan_ctx ctx = {.member = m, .persistent_load = persistent_load};
    scanner *sc = scanner_new(rep, data, n, &ctx);
    if (sc == NULL) {
        rep->oom = 1;
        return;
    }
    scanner_run_all(sc, 0);
    scanner_free(sc);
}

static void
scan_member(aisb_report *rep, int m, const zip_entry *e, const uint8_t *data, size_t n, int torch_layout,
            const aisb_limits *lim, int depth)
{
    if (ends_with(e->name, ".pkl") || ends_with(e->name, ".debug_pkl")) {
        if (e->method == 8 || e->comp_size == n) {
            if (aisb_crc32(data, n) != e->crc)
                aisb_report_finding(rep, "zip-anomaly", SEV_SUSPICIOUS, m, -1, e->header_offset,
                                    "zip member at offset %llu: its CRC-32 does not match its data; torch does "
                                    "not check it",
                                    (unsigned long long)e->header_offset);
        }
        scan_pickle_member(rep, m, data, n, torch_layout);
        return;
    }
    if (torch_layout && is_storage(e->name)) {
        /* Tensor bytes. Only a whole pickle hidden in one is worth naming. */
        if (aisb_is_complete_pickle(data, n)) {
            aisb_report_finding(rep, "pickle-in-storage", SEV_SUSPICIOUS, m, -1, 0,
                                "storage record holds a complete pickle rather than tensor data");
            scan_pickle_member(rep, m, data, n, 0);
        }
        else
            aisb_report_set_format(rep, m, "storage");
        return;
    }
    const char *fmt = aisb_sniff(data, n);
    if (strcmp(fmt, FMT_PICKLE) == 0 && !aisb_looks_like_pickle(data, n)) {
        aisb_report_set_format(rep, m, "data");
        return;
    }
    if (strcmp(fmt, FMT_PICKLE) == 0) {
        scan_pickle_member(rep, m, data, n, torch_layout);
        return;
    }
    if (strcmp(fmt, "unknown") == 0 || strcmp(fmt, "empty") == 0) {
        /* Text records (version, byteorder) and other plain data: nothing runs it. */
        aisb_report_set_format(rep, m, "data");
        return;
    }
    aisb_report_set_format(rep, m, fmt);
    aisb_scan_content(rep, m, fmt, data, n, lim, depth + 1);
}

void
aisb_scan_zip(aisb_report *rep, int member, const uint8_t *buf, size_t len, const aisb_limits *lim, int depth)
{
    zip_archive z;
    if (zip_open(&z, buf, len) < 0) {
        aisb_report_finding(rep, "parse-error", SEV_ERROR, member, -1, 0, "zip archive cannot be read: %s", z.error);
        zip_close(&z);
        aisb_probe_as_pickle(rep, member, buf, len, "broken zip");
        return;
    }
    int torch_layout = 0, torchscript = 0, npz = z.count > 0;
    for (size_t i = 0; i < z.count; i++) {
        aisb_slice name = z.entries[i].name;
        torch_layout |= is_record(name, "data.pkl");
        torchscript |= is_record(name, "constants.pkl") || in_folder(name, "code/");
        npz &= ends_with(name, ".npy");
    }
    torch_layout |= torchscript;
    aisb_report_set_format(rep, member, torchscript ? FMT_TORCHSCRIPT : torch_layout ? FMT_TORCH_ZIP : npz ? FMT_NPZ : FMT_ZIP);
    if (torchscript)
        aisb_report_finding(rep, "torchscript", SEV_SUSPICIOUS, member, -1, 0,
                            "TorchScript archive: torch.jit.load runs its code/ when loading it, and aisbom's "
                            "loader refuses TorchScript");
    if (z.prefix)
        aisb_report_finding(rep, "zip-anomaly", SEV_SUSPICIOUS, member, -1, 0,
                            "%llu bytes come before the zip archive proper", (unsigned long long)z.prefix);
    if (z.end < len)
        aisb_report_finding(rep, "trailing-data", SEV_ERROR, member, -1, z.end,
                            "%llu bytes follow the end of the zip archive", (unsigned long long)(len - z.end));
    uint64_t gaps, first_gap;
    zip_uncovered(&z, buf, len, &gaps, &first_gap);
    if (gaps)
        aisb_report_finding(rep, "zip-anomaly", SEV_SUSPICIOUS, member, -1, first_gap,
                            "%llu bytes inside the archive (the first at offset %llu) belong to no member",
                            (unsigned long long)gaps, (unsigned long long)first_gap);

    size_t storages = 0;
    for (size_t i = 0; i < z.count; i++) {
        const zip_entry *e = &z.entries[i];
        uint8_t *owned;
        aisb_slice data;
        char err[160];
        /* Plain tensor records are counted, not listed: a checkpoint has
         * tens of thousands and they say nothing. */
        if (torch_layout && !e->anomalies && e->method == 0 && is_storage(e->name) &&
            e->data_offset <= len && e->comp_size <= len - e->data_offset &&
            !aisb_is_complete_pickle(buf + e->data_offset, (size_t)e->comp_size)) {
            storages++;
            continue;
        }
        int m = aisb_report_member(rep, (const char *)e->name.p, e->name.n, "data",
                                   e->method == 0 ? e->data_offset : 0, e->size, member);
        if (m < 0)
            break;
        report_anomalies(rep, m, e);
        if (zip_read(e, buf, len, lim->max_inflate, &owned, &data, err, sizeof err) < 0) {
            aisb_report_finding(rep, "unreadable-member", SEV_ERROR, m, -1, e->header_offset,
                                "zip member at offset %llu was not read: %s", (unsigned long long)e->header_offset,
                                err);
            continue;
        }
        scan_member(rep, m, e, data.p, data.n, torch_layout, lim, depth);
        free(owned);
    }
    if (storages) {
        char name[64];
        snprintf(name, sizeof name, "<%zu storage records>", storages);
        aisb_report_member(rep, name, strlen(name), "storage", 0, 0, member);
    }
    zip_close(&z);
}
