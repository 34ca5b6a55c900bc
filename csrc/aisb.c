#include "aisb.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

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
    free(v->data);
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
        void *p = realloc(v->data, cap * v->item);
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
