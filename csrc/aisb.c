/* mremap */
#define _GNU_SOURCE

#include "aisb.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* A mapping of `bytes` starting on a huge-page boundary, so that huge pages
 * fill it from its first byte and mremap can move them whole. */
static void *
map_aligned(size_t bytes, int prot)
{
    size_t span = bytes + AISB_BIG;
    /* Writable memory is committed here, so that running out fails now, as
     * malloc would, and not at some later write. */
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (prot == PROT_NONE ? MAP_NORESERVE : 0);
    uint8_t *raw = mmap(NULL, span, prot, flags, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uint8_t *start = (uint8_t *)(((uintptr_t)raw + AISB_BIG - 1) & ~(uintptr_t)(AISB_BIG - 1));
    if (start > raw)
        munmap(raw, (size_t)(start - raw));
    if (raw + span > start + bytes)
        munmap(start + bytes, (size_t)(raw + span - (start + bytes)));
    return start;
}

void *
aisb_big_resize(void *p, size_t old_bytes, size_t new_bytes)
{
    if (new_bytes < AISB_BIG)
        return realloc(p, new_bytes);
    if (new_bytes > SIZE_MAX - AISB_BIG)
        return NULL;
    if (old_bytes >= AISB_BIG) {
        /* Moved onto an aligned spot (the placeholder mapping is replaced),
         * never onto whatever address the kernel picks: an unaligned move
         * splits every huge page into small ones. */
        void *spot = map_aligned(new_bytes, PROT_NONE);
        if (spot == NULL)
            return NULL;
        void *q = mremap(p, old_bytes, new_bytes, MREMAP_MAYMOVE | MREMAP_FIXED, spot);
        if (q == MAP_FAILED) {
            munmap(spot, new_bytes);
            return NULL;
        }
        return q;
    }
    void *q = map_aligned(new_bytes, PROT_READ | PROT_WRITE);
    if (q == NULL)
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(q, new_bytes, MADV_HUGEPAGE); /* a hint: without it, 4 KiB pages */
#endif
    if (old_bytes)
        memcpy(q, p, old_bytes);
    free(p);
    return q;
}

void
aisb_big_free(void *p, size_t bytes)
{
    if (p == NULL)
        return;
    if (bytes >= AISB_BIG)
        munmap(p, bytes);
    else
        free(p);
}

void
aisb_vec_init(aisb_vec *v, size_t item)
{
    v->data = NULL;
    v->len = 0;
    v->cap = 0;
    v->item = item;
}

void
aisb_vec_free(aisb_vec *v)
{
    aisb_big_free(v->data, v->cap * v->item);
    v->data = NULL;
    v->len = v->cap = 0;
}

void *
aisb_vec_grow(aisb_vec *v, size_t count)
{
    if (count > SIZE_MAX / v->item - v->len)
        return NULL;
    if (v->len + count > v->cap) {
        size_t cap = v->cap ? v->cap : 16;
        while (cap < v->len + count) {
            if (cap > SIZE_MAX / 2 / v->item)
                return NULL;
            cap *= 2;
        }
        void *p = aisb_big_resize(v->data, v->cap * v->item, cap * v->item);
        if (p == NULL)
            return NULL;
        v->data = p;
        v->cap = cap;
    }
    char *slot = (char *)v->data + v->len * v->item;
    v->len += count;
    return slot;
}

int
aisb_buf_put(aisb_buf *b, const void *p, size_t n)
{
    if (n > SIZE_MAX - b->len - 1)
        return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2)
                return -1;
            cap *= 2;
        }
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int
aisb_buf_printf(aisb_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof small)
        return aisb_buf_put(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (big == NULL)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = aisb_buf_put(b, big, (size_t)n);
    free(big);
    return rc;
}

void
aisb_buf_free(aisb_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int
aisb_buf_put_escaped(aisb_buf *b, const uint8_t *p, size_t n, size_t limit)
{
    static const char hex[] = "0123456789abcdef";
    size_t shown = n < limit ? n : limit;
    for (size_t i = 0; i < shown; i++) {
        uint8_t c = p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            if (aisb_buf_put(b, &c, 1) < 0)
                return -1;
        }
        else {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            if (aisb_buf_put(b, esc, 4) < 0)
                return -1;
        }
    }
    if (shown < n)
        return aisb_buf_put(b, "...", 3);
    return 0;
}
