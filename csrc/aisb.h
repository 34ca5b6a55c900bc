/* Shared plumbing for the engine: byte slices, growable arrays, error records.
 *
 * Everything in csrc/ except module.c and unpickler.c is plain C11 with no
 * Python dependency, so the fuzz targets can link it on its own. */
#ifndef AISB_H
#define AISB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define AISB_UNUSED __attribute__((unused))
#define AISB_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define AISB_UNUSED
#define AISB_PRINTF(f, a)
#endif

typedef struct {
    const uint8_t *p;
    size_t n;
} aisb_slice;

static inline aisb_slice
aisb_slice_make(const void *p, size_t n)
{
    aisb_slice s = {(const uint8_t *)p, n};
    return s;
}

static inline int
aisb_slice_eq(aisb_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

static inline uint64_t
aisb_le(const uint8_t *p, int nbytes)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* One unaligned load instead of a byte loop: this is on the hot path. */
    switch (nbytes) {
    case 1: return p[0];
    case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
    case 8: { uint64_t v; memcpy(&v, p, 8); return v; }
    default: break;
    }
#endif
    uint64_t x = 0;
    for (int i = nbytes - 1; i >= 0; i--)
        x = (x << 8) | p[i];
    return x;
}

/* A growable array of fixed-size items. Growth is geometric, so appends are
 * amortised O(1); every allocation is bounded by the caller's own limits. */
typedef struct {
    void *data;
    size_t len;      /* items in use */
    size_t cap;      /* items allocated */
    size_t item;     /* bytes per item */
} aisb_vec;

/* Arrays of AISB_BIG bytes or more get mappings of their own, marked for
 * transparent huge pages: a scan of a dense pickle of tens of MB builds
 * hundreds of MB of records, and faulting those in 4 KiB at a time cost as
 * much as the scan itself. Which kind a block is follows from its size, so
 * callers pass the size they allocated. Growth only (new_bytes >= old_bytes). */
#define AISB_BIG ((size_t)2 << 20)
void *aisb_big_resize(void *p, size_t old_bytes, size_t new_bytes);
void aisb_big_free(void *p, size_t bytes);

void aisb_vec_init(aisb_vec *v, size_t item);
void aisb_vec_free(aisb_vec *v);
/* The slow path of aisb_vec_push_raw: grow, then hand out the items. */
void *aisb_vec_grow(aisb_vec *v, size_t count);

/* Returns a pointer to `count` new items at the end (uninitialised), or NULL
 * when out of memory. Inline: the scanner pushes once per opcode. */
static inline void *
aisb_vec_push_raw(aisb_vec *v, size_t count)
{
    if (count <= v->cap - v->len) {
        void *slot = (char *)v->data + v->len * v->item;
        v->len += count;
        return slot;
    }
    return aisb_vec_grow(v, count);
}

/* The same, zeroed. */
static inline void *
aisb_vec_push(aisb_vec *v, size_t count)
{
    void *slot = aisb_vec_push_raw(v, count);
    if (slot)
        memset(slot, 0, count * v->item);
    return slot;
}
#define AISB_VEC_AT(v, type, i) (((type *)(v)->data)[(i)])

/* A growable byte buffer for strings built by the engine (names, messages). */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} aisb_buf;

int aisb_buf_put(aisb_buf *b, const void *p, size_t n);
int aisb_buf_printf(aisb_buf *b, const char *fmt, ...) AISB_PRINTF(2, 3);
void aisb_buf_free(aisb_buf *b);

/* Render bytes for a human: printable ASCII as is, the rest as \xNN, cut at
 * `limit` input bytes with a trailing "..." so a hostile name can't flood a report. */
int aisb_buf_put_escaped(aisb_buf *b, const uint8_t *p, size_t n, size_t limit);

#endif
