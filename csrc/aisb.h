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

void aisb_vec_init(aisb_vec *v, size_t item);
void aisb_vec_free(aisb_vec *v);
/* Returns a pointer to `count` new zeroed items at the end, or NULL when out of memory. */
void *aisb_vec_push(aisb_vec *v, size_t count);
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
