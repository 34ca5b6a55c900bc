/* A zip reader that accepts at least everything torch's reader (miniz)
 * accepts, and says what it had to tolerate. The scanner reads every member
 * the central directory lists and every local entry it does not list, so no
 * reader's choice of which copy to trust can hide a member. */
#ifndef AISB_ZIP_H
#define AISB_ZIP_H

#include "aisb.h"

/* Things a strict reader would reject; torch reads on regardless. */
enum {
    ZIP_NAME_MISMATCH = 1 << 0,   /* local header name differs from the central directory's */
    ZIP_SIZE_MISMATCH = 1 << 1,   /* local header sizes/method differ from the central directory's */
    ZIP_ENCRYPTED = 1 << 2,       /* flag bit 0x1 */
    ZIP_ODD_FLAGS = 1 << 3,       /* flag bits 0x20/0x40 or others no zip writer sets here */
    ZIP_DUPLICATE = 1 << 4,       /* another member has the same name */
    ZIP_ORPHAN = 1 << 5,          /* a local entry the central directory does not list */
    ZIP_SHIFTED = 1 << 6,         /* offsets only make sense after adding the prefix length */
    ZIP_DIRECTORY = 1 << 7,       /* marked as a directory yet holding data: torch reads uninitialised memory */
    ZIP_ALTERNATE = 1 << 8,       /* listed only by a second central directory the ZIP64 record hides */
};

typedef struct {
    aisb_slice name;              /* central directory name (local name for orphans) */
    aisb_slice local_name;
    uint16_t flags;
    uint16_t method;
    uint32_t crc;
    uint64_t comp_size;
    uint64_t size;
    uint64_t header_offset;       /* of the local header, prefix included */
    uint64_t data_offset;
    uint32_t external_attr;
    int anomalies;                /* ZIP_* */
} zip_entry;

typedef struct {
    zip_entry *entries;
    size_t count;
    uint64_t prefix;              /* bytes before the archive proper */
    uint64_t cd_offset;
    uint64_t cd_end;              /* one past the central directory */
    uint64_t end;                 /* one past the end-of-central-directory record(s) and comment */
    uint64_t eocd;                /* where the end record (or the ZIP64 record before it) starts */
    char error[160];
} zip_archive;

/* ASCII case-insensitive name equality: torch's reader (miniz) looks
 * records up this way. */
int zip_name_eq(aisb_slice a, aisb_slice b);

/* Parse the central directory and the local headers. Returns 0, or -1 with
 * z->error set when there is no usable central directory. */
int zip_open(zip_archive *z, const uint8_t *buf, size_t len);
void zip_close(zip_archive *z);

/* A member's bytes: a slice of buf for stored members, or inflated into
 * *owned (freed by the caller) for deflated ones. Returns 0, or -1 with
 * err filled in (unsupported method, truncated, corrupt, over cap). */
int zip_read(const zip_entry *e, const uint8_t *buf, size_t len, uint64_t cap, uint8_t **owned, aisb_slice *out,
             char *err, size_t errlen);

uint32_t aisb_crc32(const uint8_t *p, size_t n);

/* Bytes before z->end that belong to no member, directory or end record and
 * are not zero padding: *count of them, the first at *first. */
void zip_uncovered(const zip_archive *z, const uint8_t *buf, size_t len, uint64_t *count, uint64_t *first);

#endif
