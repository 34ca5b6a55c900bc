/* memrchr */
#define _GNU_SOURCE

#include "zip.h"

#include "inflate.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define LOCAL_SIZE 30
#define CENTRAL_SIZE 46
#define EOCD_SIZE 22
#define MAX_COMMENT 0xffff

static uint32_t
u32(const uint8_t *p)
{
    return (uint32_t)aisb_le(p, 4);
}

static uint16_t
u16(const uint8_t *p)
{
    return (uint16_t)aisb_le(p, 2);
}

static int
fail(zip_archive *z, const char *msg)
{
    snprintf(z->error, sizeof z->error, "%s", msg);
    return -1;
}

/* The last end-of-central-directory signature in the tail, as both miniz
 * and Python's zipfile search for it. */
static int
find_eocd(const uint8_t *buf, size_t len, size_t *at)
{
    if (len < EOCD_SIZE)
        return -1;
    size_t lo = len - EOCD_SIZE > MAX_COMMENT ? len - EOCD_SIZE - MAX_COMMENT : 0;
    /* Every pickle is probed for an appended zip, so the search runs on each
     * one: memrchr finds candidate first bytes many at a time. */
    size_t end = len - EOCD_SIZE + 1;
    while (end > lo) {
        const uint8_t *p = memrchr(buf + lo, SIG_EOCD & 0xff, end - lo);
        if (p == NULL)
            return -1;
        size_t i = (size_t)(p - buf);
        if (u32(buf + i) == SIG_EOCD) {
            *at = i;
            return 0;
        }
        end = i;
    }
    return -1;
}

/* Values of 0xffff... in the fixed fields live in the zip64 extra field. */
static void
zip64_extra(const uint8_t *extra, size_t n, zip_entry *e, uint32_t raw_size, uint32_t raw_comp, uint32_t raw_off)
{
    size_t i = 0;
    while (n - i >= 4) {
        uint16_t id = u16(extra + i), sz = u16(extra + i + 2);
        if (sz > n - i - 4)
            return;
        if (id == 0x0001) {
            const uint8_t *p = extra + i + 4, *end = p + sz;
            if (raw_size == 0xffffffffu && end - p >= 8) {
                e->size = aisb_le(p, 8);
                p += 8;
            }
            if (raw_comp == 0xffffffffu && end - p >= 8) {
                e->comp_size = aisb_le(p, 8);
                p += 8;
            }
            if (raw_off == 0xffffffffu && end - p >= 8)
                e->header_offset = aisb_le(p, 8);
            return;
        }
        i += 4 + (size_t)sz;
    }
}

/* Locate the local header of an entry (trying the prefix-shifted offset
 * when the stated one holds no header) and where its data starts. */
static int
read_local(zip_archive *z, zip_entry *e, const uint8_t *buf, size_t len)
{
    uint64_t off = e->header_offset;
    if (off > len || len - off < LOCAL_SIZE || u32(buf + off) != SIG_LOCAL) {
        uint64_t shifted = off + z->prefix;
        if (z->prefix == 0 || shifted > len || len - shifted < LOCAL_SIZE || u32(buf + shifted) != SIG_LOCAL)
            return -1;
        off = shifted;
        e->anomalies |= ZIP_SHIFTED;
    }
    const uint8_t *h = buf + off;
    size_t nlen = u16(h + 26), xlen = u16(h + 28);
    if (len - off - LOCAL_SIZE < nlen + xlen)
        return -1;
    e->header_offset = off;
    e->local_name = aisb_slice_make(h + LOCAL_SIZE, nlen);
    e->data_offset = off + LOCAL_SIZE + nlen + xlen;
    if (e->local_name.n != e->name.n || memcmp(e->local_name.p, e->name.p, e->name.n) != 0)
        e->anomalies |= ZIP_NAME_MISMATCH;
    uint16_t lflags = u16(h + 6), lmethod = u16(h + 8);
    uint32_t lcomp = u32(h + 18), lsize = u32(h + 22);
    /* With a data descriptor (bit 3) the local sizes are legitimately zero. */
    if (lmethod != e->method ||
        (!(lflags & 0x8) && lcomp != 0xffffffffu && (lcomp != e->comp_size || lsize != e->size)))
        e->anomalies |= ZIP_SIZE_MISMATCH;
    return 0;
}

static void
mark_flags(zip_entry *e)
{
    if (e->flags & 0x1)
        e->anomalies |= ZIP_ENCRYPTED;
    /* 0x8 data descriptor, 0x800 UTF-8 names, 0x2/0x4 deflate levels are normal. */
    if (e->flags & ~(0x1u | 0x2u | 0x4u | 0x8u | 0x800u))
        e->anomalies |= ZIP_ODD_FLAGS;
}

static uint8_t
lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

int
zip_name_eq(aisb_slice a, aisb_slice b)
{
    if (a.n != b.n)
        return 0;
    for (size_t i = 0; i < a.n; i++)
        if (lower(a.p[i]) != lower(b.p[i]))
            return 0;
    return 1;
}

/* Append the entries of the central directory at cd_start. */
static int
parse_central(zip_archive *z, const uint8_t *buf, size_t len, uint64_t cd_start, uint64_t cd_size, uint64_t want,
              int anomaly)
{
    if (cd_start > len || cd_size > len - cd_start)
        return fail(z, "the central directory lies outside the file");
    size_t cap = (size_t)(cd_size / CENTRAL_SIZE) + 1, first = z->count;
    zip_entry *grown = realloc(z->entries, (z->count + cap) * sizeof *grown);
    if (grown == NULL)
        return fail(z, "out of memory");
    z->entries = grown;
    memset(z->entries + z->count, 0, cap * sizeof *grown);
    uint64_t pos = cd_start, end = cd_start + cd_size;
    while (end - pos >= CENTRAL_SIZE && u32(buf + pos) == SIG_CENTRAL && z->count - first < cap) {
        const uint8_t *c = buf + pos;
        size_t nlen = u16(c + 28), xlen = u16(c + 30), clen = u16(c + 32);
        if (end - pos - CENTRAL_SIZE < nlen + xlen + clen)
            return fail(z, "a central directory entry runs past the directory");
        zip_entry *e = &z->entries[z->count++];
        e->flags = u16(c + 8);
        e->method = u16(c + 10);
        e->crc = u32(c + 16);
        e->comp_size = u32(c + 20);
        e->size = u32(c + 24);
        e->external_attr = u32(c + 38);
        e->header_offset = u32(c + 42);
        e->name = aisb_slice_make(c + CENTRAL_SIZE, nlen);
        e->anomalies = anomaly;
        zip64_extra(c + CENTRAL_SIZE + nlen, xlen, e, u32(c + 24), u32(c + 20), u32(c + 42));
        mark_flags(e);
        /* miniz skips reading a "directory" and leaves its buffer as it was */
        if (((e->external_attr & 0x10) || (nlen && e->name.p[nlen - 1] == '/')) && (e->size || e->comp_size))
            e->anomalies |= ZIP_DIRECTORY;
        pos += CENTRAL_SIZE + nlen + xlen + clen;
    }
    if (z->count - first != want && want != 0xffff && want != 0xffffffffu)
        return fail(z, "the central directory has a different number of entries than its end record says");
    return 0;
}

static void
mark_duplicates(zip_archive *z)
{
    /* Names equal after ASCII case folding count as duplicates: torch's
     * lookup folds case, and which copy it finds depends on a heap sort. */
    size_t cap = 16;
    while (cap < z->count * 2)
        cap *= 2;
    struct slot {
        uint64_t hash;
        size_t entry;  /* index + 1, 0 when empty */
    } *table = calloc(cap, sizeof *table);
    if (table == NULL)
        return;
    for (size_t i = 0; i < z->count; i++) {
        zip_entry *e = &z->entries[i];
        uint64_t h = 1469598103934665603ULL;
        for (size_t k = 0; k < e->name.n; k++)
            h = (h ^ lower(e->name.p[k])) * 1099511628211ULL;
        size_t j = h & (cap - 1);
        for (; table[j].entry; j = (j + 1) & (cap - 1)) {
            zip_entry *o = &z->entries[table[j].entry - 1];
            if (table[j].hash == h && zip_name_eq(o->name, e->name)) {
                o->anomalies |= ZIP_DUPLICATE;
                e->anomalies |= ZIP_DUPLICATE;
            }
        }
        table[j].hash = h;
        table[j].entry = i + 1;
    }
    free(table);
}

/* Whether keys[0], keys[stride], ... never decrease. */
static int
sorted_u64(const uint64_t *keys, size_t n, size_t stride)
{
    for (size_t i = 1; i < n; i++)
        if (keys[i * stride] < keys[(i - 1) * stride])
            return 0;
    return 1;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Index of the central-directory entry whose local header is at `pos`. */
static size_t
entry_at(const zip_archive *z, const uint64_t *sorted, const size_t *order, size_t n, uint64_t pos)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && sorted[lo] == pos ? order[lo] : z->count;
}

/* Local entries the central directory does not list: walk the chain of
 * local headers from the start, as a streaming reader would. */
static void
add_orphans(zip_archive *z, const uint8_t *buf, size_t len)
{
    size_t n = z->count;
    uint64_t *sorted = malloc((n ? n : 1) * sizeof *sorted);
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    uint64_t *pairs = malloc((n ? n : 1) * 2 * sizeof *pairs);
    if (!sorted || !order || !pairs)
        goto done;
    for (size_t i = 0; i < n; i++) {
        pairs[2 * i] = z->entries[i].header_offset;
        pairs[2 * i + 1] = i;
    }
    if (!sorted_u64(pairs, n, 2))  /* writers list entries in file order */
        qsort(pairs, n, 2 * sizeof *pairs, cmp_u64);
    for (size_t i = 0; i < n; i++) {
        sorted[i] = pairs[2 * i];
        order[i] = (size_t)pairs[2 * i + 1];
    }
    uint64_t pos = z->prefix;
    for (;;) {
        if (pos > len || len - pos < LOCAL_SIZE || u32(buf + pos) != SIG_LOCAL)
            break;
        const uint8_t *h = buf + pos;
        uint16_t flags = u16(h + 6);
        size_t nlen = u16(h + 26), xlen = u16(h + 28);
        uint64_t comp = u32(h + 18);
        size_t known = entry_at(z, sorted, order, n, pos);
        if (known < n)
            comp = z->entries[known].comp_size;
        else if (flags & 0x8)
            break;  /* sizes only in a trailing descriptor: the chain cannot be followed */
        uint64_t next = pos + LOCAL_SIZE + nlen + xlen + comp;
        if (next > len || next < pos)
            break;
        if (known == n) {
            zip_entry *grown = realloc(z->entries, (z->count + 1) * sizeof *grown);
            if (grown == NULL)
                break;
            z->entries = grown;
            zip_entry *e = &z->entries[z->count++];
            memset(e, 0, sizeof *e);
            e->flags = flags;
            e->method = u16(h + 8);
            e->crc = u32(h + 14);
            e->comp_size = comp;
            e->size = u32(h + 22);
            e->header_offset = pos;
            e->name = e->local_name = aisb_slice_make(h + LOCAL_SIZE, nlen);
            e->data_offset = pos + LOCAL_SIZE + nlen + xlen;
            e->anomalies = ZIP_ORPHAN;
            mark_flags(e);
        }
        else if (flags & 0x8) {
            /* skip the data descriptor, with or without its signature */
            if (len - next >= 4 && u32(buf + next) == 0x08074b50u)
                next += 4;
            next += 12;
        }
        pos = next;
    }
done:
    free(sorted);
    free(order);
    free(pairs);
}

int
zip_open(zip_archive *z, const uint8_t *buf, size_t len)
{
    memset(z, 0, sizeof *z);
    size_t eocd;
    if (find_eocd(buf, len, &eocd) < 0)
        return fail(z, "no end of central directory record");
    const uint8_t *e = buf + eocd;
    uint64_t want = u16(e + 10), cd_size = u32(e + 12), cd_off = u32(e + 16);
    uint64_t want32 = want, cd_size32 = cd_size, cd_off32 = cd_off;
    uint64_t record_start = eocd;
    int zip64 = 0;
    z->end = eocd + EOCD_SIZE + u16(e + 20);
    z->eocd = eocd;
    if (z->end > len)
        z->end = len;  /* the comment length is not checked by miniz either */
    if (eocd >= 20 && u32(buf + eocd - 20) == SIG_LOCATOR64) {
        /* A valid ZIP64 record overrides the 32-bit one, whatever it says (miniz). */
        uint64_t at = aisb_le(buf + eocd - 20 + 8, 8);
        if (at <= len && len - at >= 56 && u32(buf + at) == SIG_EOCD64) {
            want = aisb_le(buf + at + 32, 8);
            cd_size = aisb_le(buf + at + 40, 8);
            cd_off = aisb_le(buf + at + 48, 8);
            record_start = at;
            zip64 = 1;
            if (at < z->eocd)
                z->eocd = at;
        }
    }
    /* Bytes before the archive shift every offset by the same amount. */
    if (cd_size <= record_start && record_start - cd_size >= cd_off)
        z->prefix = record_start - cd_size - cd_off;
    uint64_t cd_start = cd_off + z->prefix;
    if (parse_central(z, buf, len, cd_start, cd_size, want, 0) < 0)
        return -1;
    z->cd_offset = cd_start;
    z->cd_end = cd_start + cd_size;
    size_t listed = z->count;
    /* A reader that ignores ZIP64 sees the 32-bit directory: read it too. */
    if (zip64 && cd_off32 != 0xffffffffu && cd_size32 != 0xffffffffu && (cd_off32 != cd_off || cd_size32 != cd_size) &&
        cd_off32 + z->prefix <= len && cd_size32 <= len - (cd_off32 + z->prefix)) {
        zip_archive alt;
        memset(&alt, 0, sizeof alt);
        /* (no realloc to zero bytes: glibc would free the block and return NULL) */
        if (parse_central(&alt, buf, len, cd_off32 + z->prefix, cd_size32, want32, ZIP_ALTERNATE) == 0 &&
            alt.count > 0) {
            zip_entry *grown = realloc(z->entries, (z->count + alt.count) * sizeof *grown);
            if (grown) {
                z->entries = grown;
                memcpy(z->entries + z->count, alt.entries, alt.count * sizeof *grown);
                z->count += alt.count;
            }
        }
        free(alt.entries);
    }
    for (size_t i = 0; i < z->count; i++)
        if (read_local(z, &z->entries[i], buf, len) < 0) {
            if (i >= listed) {
                /* an alternate entry without a local header: drop it */
                z->entries[i] = z->entries[--z->count];
                i--;
                continue;
            }
            snprintf(z->error, sizeof z->error, "member %zu has no local header at offset %llu", i,
                     (unsigned long long)z->entries[i].header_offset);
            return -1;
        }
    mark_duplicates(z);
    add_orphans(z, buf, len);
    return 0;
}

void
zip_close(zip_archive *z)
{
    free(z->entries);
    z->entries = NULL;
    z->count = 0;
}

int
zip_read(const zip_entry *e, const uint8_t *buf, size_t len, uint64_t cap, uint8_t **owned, aisb_slice *out,
         char *err, size_t errlen)
{
    *owned = NULL;
    if (e->data_offset > len || e->comp_size > len - e->data_offset) {
        snprintf(err, errlen, "its data runs past the end of the file");
        return -1;
    }
    const uint8_t *data = buf + e->data_offset;
    if (e->method == 0) {
        *out = aisb_slice_make(data, (size_t)e->comp_size);
        return 0;
    }
    if (e->method != 8) {
        snprintf(err, errlen, "compression method %u is not one torch can read", e->method);
        return -1;
    }
    /* Size the buffer from the declared size, but never trust it past the cap. */
    uint64_t want = e->size < cap ? e->size + 1 : cap;
    if (want > SIZE_MAX || want == 0)
        want = want ? SIZE_MAX : 1;
    uint8_t *dst = malloc((size_t)want);
    if (dst == NULL) {
        snprintf(err, errlen, "cannot allocate %llu bytes to inflate it", (unsigned long long)want);
        return -1;
    }
    size_t got = 0, used = 0;
    aisb_inflate_status st = aisb_inflate(data, (size_t)e->comp_size, dst, (size_t)want, &got, &used);
    if (st != AISB_INFLATE_OK) {
        free(dst);
        if (st == AISB_INFLATE_TOO_BIG)
            snprintf(err, errlen, "it inflates past %llu bytes (%s)", (unsigned long long)want,
                     want >= cap ? "the decompression cap" : "its declared size");
        else
            snprintf(err, errlen, "its deflate data is corrupt (%s)", aisb_inflate_strerror(st));
        return -1;
    }
    *owned = dst;
    *out = aisb_slice_make(dst, got);
    return 0;
}

/* Slicing-by-8: eight bytes per step. A torch checkpoint's data.pkl is
 * megabytes, and the byte-at-a-time loop cost more than scanning it. */
static uint32_t crc_tables[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_tables[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_tables[t][i] = (crc_tables[t - 1][i] >> 8) ^ crc_tables[0][crc_tables[t - 1][i] & 0xff];
}

uint32_t
aisb_crc32(const uint8_t *p, size_t n)
{
    pthread_once(&crc_once, crc_init);
    uint32_t c = 0xffffffffu;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = c ^ (uint32_t)aisb_le(p, 4), hi = (uint32_t)aisb_le(p + 4, 4);
        c = crc_tables[7][lo & 0xff] ^ crc_tables[6][(lo >> 8) & 0xff] ^ crc_tables[5][(lo >> 16) & 0xff] ^
            crc_tables[4][lo >> 24] ^ crc_tables[3][hi & 0xff] ^ crc_tables[2][(hi >> 8) & 0xff] ^
            crc_tables[1][(hi >> 16) & 0xff] ^ crc_tables[0][hi >> 24];
    }
    for (; n > 0; p++, n--)
        c = crc_tables[0][(c ^ *p) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

typedef struct {
    uint64_t start, end;
} span;

static int
cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int
next_is_header(const uint8_t *buf, size_t len, uint64_t at)
{
    if (at > len || len - at < 4)
        return 0;
    uint32_t sig = u32(buf + at);
    return sig == SIG_LOCAL || sig == SIG_CENTRAL || sig == SIG_EOCD || sig == SIG_EOCD64;
}

void
zip_uncovered(const zip_archive *z, const uint8_t *buf, size_t len, uint64_t *count, uint64_t *first)
{
    *count = 0;
    *first = 0;
    size_t n = z->count + 2;
    span *spans = malloc(n * sizeof *spans);
    if (spans == NULL)
        return;
    size_t k = 0;
    for (size_t i = 0; i < z->count; i++) {
        const zip_entry *e = &z->entries[i];
        uint64_t end = e->data_offset + e->comp_size;
        if (e->flags & 0x8) {
            /* the data descriptor: optional signature, CRC, then 32- or 64-bit
             * sizes; the 64-bit form is the one followed by the next header */
            uint64_t d = end;
            if (d + 4 <= len && u32(buf + d) == 0x08074b50u)
                d += 4;
            d += 12;
            if (!next_is_header(buf, len, d) && next_is_header(buf, len, d + 8))
                d += 8;
            end = d;
        }
        spans[k++] = (span){e->header_offset, end};
    }
    spans[k++] = (span){z->cd_offset, z->cd_end};
    spans[k++] = (span){z->eocd, z->end};
    if (!sorted_u64(&spans[0].start, k, 2))
        qsort(spans, k, sizeof *spans, cmp_span);
    uint64_t at = z->prefix;
    for (size_t i = 0; i <= k; i++) {
        uint64_t next = i < k ? spans[i].start : z->end;
        for (uint64_t p = at; p < next && p < len; p++) {
            if (buf[p]) {
                if (*count == 0)
                    *first = p;
                (*count)++;
            }
        }
        if (i < k && spans[i].end > at)
            at = spans[i].end;
    }
    free(spans);
}
