/* tar archives, read the way Python's tarfile reads them (torch's oldest
 * checkpoint format is a tar, and torch.load opens it with tarfile): 512-byte
 * headers whose checksum must match, PAX and GNU long-name records, data
 * padded to 512 bytes, the archive ending at the first zero block or, after
 * the first member, at the first invalid header. */
#include "formats.h"

#include <stdio.h>

#define BLOCK 512

/* tarfile.nti for the octal form: NUL ends the field, whitespace is stripped. */
static int
octal_field(const uint8_t *p, size_t n, uint64_t *out)
{
    if (n && (p[0] == 0x80 || p[0] == 0xff)) {
        /* GNU base-256: big-endian, the top bit of the first byte is the sign */
        if (p[0] == 0xff)
            return -1;
        uint64_t v = 0;
        for (size_t i = 1; i < n; i++) {
            if (v >> 56)
                return -1;
            v = (v << 8) | p[i];
        }
        *out = v;
        return 0;
    }
    const uint8_t *z = memchr(p, 0, n);
    size_t end = z ? (size_t)(z - p) : n, i = 0;
    while (i < end && (p[i] == ' ' || (p[i] >= 9 && p[i] <= 13)))
        i++;
    while (end > i && (p[end - 1] == ' ' || (p[end - 1] >= 9 && p[end - 1] <= 13)))
        end--;
    uint64_t v = 0;
    for (; i < end; i++) {
        if (p[i] < '0' || p[i] > '7' || (v >> 60))
            return -1;
        v = v * 8 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

static int
all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* calc_chksums: the stored checksum may be the unsigned or the signed sum. */
int
aisb_tar_header_valid(const uint8_t *buf, size_t len)
{
    if (len < BLOCK || all_zero(buf, BLOCK))
        return 0;
    uint64_t stored;
    if (octal_field(buf + 148, 8, &stored) < 0)
        return 0;
    int64_t usum = 256, ssum = 256;
    for (size_t i = 0; i < BLOCK; i++) {
        if (i >= 148 && i < 156)
            continue;
        usum += buf[i];
        ssum += (int8_t)buf[i];
    }
    return (int64_t)stored == usum || (int64_t)stored == ssum;
}

/* A PAX record set: "%d %s=%s\n" lines; we need path and size. */
static void
pax_overrides(const uint8_t *p, size_t n, aisb_slice *path, uint64_t *size, int *have_size)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i, reclen = 0;
        while (j < n && p[j] >= '0' && p[j] <= '9' && reclen < n)
            reclen = reclen * 10 + (size_t)(p[j++] - '0');
        if (j == i || j >= n || p[j] != ' ' || reclen == 0 || reclen > n - i)
            return;
        const uint8_t *kv = p + j + 1, *rend = p + i + reclen - 1;
        const uint8_t *eq = memchr(kv, '=', (size_t)(rend - kv));
        if (eq && rend >= eq) {
            aisb_slice key = aisb_slice_make(kv, (size_t)(eq - kv));
            aisb_slice val = aisb_slice_make(eq + 1, (size_t)(rend - eq - 1));
            if (aisb_slice_eq(key, "path"))
                *path = val;
            else if (aisb_slice_eq(key, "size")) {
                uint64_t v = 0;
                int ok = val.n > 0;
                for (size_t k = 0; k < val.n && ok; k++) {
                    ok = val.p[k] >= '0' && val.p[k] <= '9' && v < UINT64_MAX / 10;
                    v = v * 10 + (uint64_t)(val.p[k] - '0');
                }
                if (ok) {
                    *size = v;
                    *have_size = 1;
                }
            }
        }
        i += reclen;
    }
}

static int
torch_member(aisb_slice name)
{
    return aisb_slice_eq(name, "sys_info") || aisb_slice_eq(name, "pickle") || aisb_slice_eq(name, "storages") ||
           aisb_slice_eq(name, "tensors");
}

static void
scan_tar_member(aisb_report *rep, int parent, aisb_slice name, const uint8_t *data, size_t n, uint64_t file_off,
                const aisb_limits *lim, int depth, int torch_layout)
{
    int m = aisb_report_member(rep, (const char *)name.p, name.n, "data", file_off, n, parent);
    if (m < 0)
        return;
    if (torch_layout && aisb_slice_eq(name, "storages")) {
        aisb_report_set_format(rep, m, "torch-storages");
        legacy_scan_storages(rep, m, data, n);
        return;
    }
    if (torch_layout && aisb_slice_eq(name, "tensors")) {
        aisb_report_set_format(rep, m, "torch-tensors");
        legacy_scan_tensors(rep, m, data, n);
        return;
    }
    if (torch_layout && aisb_slice_eq(name, "pickle")) {
        aisb_report_set_format(rep, m, FMT_PICKLE);
        scan_ctx ctx = {.member = m, .persistent_load = 1, .module_persids = 1};
        scanner *sc = scanner_new(rep, data, n, &ctx);
        if (sc)
            scanner_run_all(sc, 0);
        scanner_free(sc);
        return;
    }
    const char *fmt = aisb_sniff(data, n);
    aisb_report_set_format(rep, m, fmt);
    if (strcmp(fmt, "empty") != 0)
        aisb_scan_content(rep, m, fmt, data, n, lim, depth + 1);
}

void
aisb_scan_tar(aisb_report *rep, int member, const uint8_t *buf, size_t len, const aisb_limits *lim, int depth)
{
    /* First pass: is this torch's layout? */
    int torch_layout = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t pos = 0;
        aisb_slice longname = {NULL, 0}, paxpath = {NULL, 0};
        uint64_t paxsize = 0;
        int have_paxsize = 0;
        while (len - pos >= BLOCK) {
            const uint8_t *h = buf + pos;
            if (all_zero(h, BLOCK) || !aisb_tar_header_valid(h, len - pos))
                break;
            uint64_t size;
            if (octal_field(h + 124, 12, &size) < 0)
                break;
            if (have_paxsize)
                size = paxsize;
            uint8_t type = h[156];
            size_t data = pos + BLOCK;
            if (size > len - data) {
                if (pass == 0)
                    break;
                aisb_report_finding(rep, "parse-error", SEV_ERROR, member, -1, pos,
                                    "tar member at offset %zu runs past the end of the archive", pos);
                return;
            }
            uint64_t padded = (size + BLOCK - 1) / BLOCK * BLOCK;
            size_t next = padded > len - data ? len : data + (size_t)padded;
            if (type == 'x' || type == 'g') {
                if (type == 'x')
                    pax_overrides(buf + data, (size_t)size, &paxpath, &paxsize, &have_paxsize);
                pos = next;
                continue;
            }
            if (type == 'L') {
                const uint8_t *z = memchr(buf + data, 0, (size_t)size);
                longname = aisb_slice_make(buf + data, z ? (size_t)(z - (buf + data)) : (size_t)size);
                pos = next;
                continue;
            }
            /* The member's name: PAX path, GNU long name, or prefix + name. */
            aisb_slice name;
            char joined[260];
            if (paxpath.p)
                name = paxpath;
            else if (longname.p)
                name = longname;
            else {
                const uint8_t *z = memchr(h, 0, 100);
                size_t nlen = z ? (size_t)(z - h) : 100;
                const uint8_t *pz = memchr(h + 345, 0, 155);
                size_t plen = memcmp(h + 257, "ustar\0", 6) == 0 ? (pz ? (size_t)(pz - (h + 345)) : 155) : 0;
                if (plen) {
                    memcpy(joined, h + 345, plen);
                    joined[plen] = '/';
                    memcpy(joined + plen + 1, h, nlen);
                    name = aisb_slice_make(joined, plen + 1 + nlen);
                }
                else
                    name = aisb_slice_make(h, nlen);
            }
            while (name.n > 1 && name.p[name.n - 1] == '/')
                name.n--;
            if (pass == 0) {
                torch_layout |= torch_member(name);
            }
            else if (type == '1' || type == '2') {
                aisb_report_finding(rep, "tar-link", torch_layout ? SEV_MALICIOUS : SEV_SUSPICIOUS, member, -1, pos,
                                    "tar member '%.*s' at offset %zu is a link: extracting it makes a reader open "
                                    "a file from outside the archive",
                                    (int)(name.n > 120 ? 120 : name.n), name.p, pos);
            }
            else if (type == '0' || type == '\0' || type == '7') {
                scan_tar_member(rep, member, name, buf + data, (size_t)size, data, lim, depth, torch_layout);
            }
            longname.p = NULL;
            paxpath.p = NULL;
            have_paxsize = 0;
            pos = next;
        }
        if (pass == 1) {
            if (torch_layout)
                aisb_report_set_format(rep, member, FMT_TORCH_TAR);
            if (!all_zero(buf + pos, len - pos))
                aisb_report_finding(rep, "trailing-data", SEV_ERROR, member, -1, pos,
                                    "%zu bytes after the end of the tar archive are not zero padding", len - pos);
        }
    }
}
