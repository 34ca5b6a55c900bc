#include "pytext.h"

/* Py_ISSPACE: the six ASCII whitespace bytes, nothing else. */
static int
py_isspace(uint8_t c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* _PyLong_DigitValue: 0-9, then letters as 10..35, everything else 37. */
static int
digit_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 10;
    return 37;
}

/* The C routines see a NUL-terminated copy of the line, so they stop at
 * the first NUL byte wherever it is. */
static size_t
c_strlen(const uint8_t *s, size_t n)
{
    const uint8_t *z = memchr(s, '\0', n);
    return z ? (size_t)(z - s) : n;
}

static void
accumulate(aisb_pyint *out, uint64_t *mag, int base, int d)
{
    if (out->big)
        return;
    if (*mag > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) {
        out->big = 1;
        return;
    }
    *mag = *mag * (uint64_t)base + (uint64_t)d;
}

static void
finish(aisb_pyint *out, uint64_t mag, int negative)
{
    out->negative = negative && (out->big || mag != 0);
    if (out->big)
        return;
    if (negative) {
        if (mag > (uint64_t)INT64_MAX + 1) {
            out->big = 1;
            return;
        }
        out->value = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    }
    else {
        if (mag > (uint64_t)INT64_MAX) {
            out->big = 1;
            return;
        }
        out->value = (int64_t)mag;
    }
}

int
aisb_pylong_parse(const uint8_t *s, size_t n, int base, aisb_pyint *out)
{
    size_t end = c_strlen(s, n);
    size_t i = 0;
    int negative = 0, error_if_nonzero = 0;
    uint64_t mag = 0;

    memset(out, 0, sizeof *out);
    while (i < end && py_isspace(s[i]))
        i++;
    if (i < end && (s[i] == '+' || s[i] == '-')) {
        negative = s[i] == '-';
        i++;
    }
    uint8_t c0 = i < end ? s[i] : 0, c1 = i + 1 < end ? s[i + 1] : 0;
    if (base == 0) {
        if (c0 != '0')
            base = 10;
        else if (c1 == 'x' || c1 == 'X')
            base = 16;
        else if (c1 == 'o' || c1 == 'O')
            base = 8;
        else if (c1 == 'b' || c1 == 'B')
            base = 2;
        else {
            /* A C-style octal literal: only the value zero is accepted. */
            error_if_nonzero = 1;
            base = 10;
        }
    }
    if (c0 == '0' && ((base == 16 && (c1 == 'x' || c1 == 'X')) ||
                      (base == 8 && (c1 == 'o' || c1 == 'O')) ||
                      (base == 2 && (c1 == 'b' || c1 == 'B')))) {
        i += 2;
        if (i < end && s[i] == '_')
            i++;
    }
    if (i < end && s[i] == '_')
        return -1;

    size_t start = i;
    int prev = 0;
    size_t digits = 0;
    while (i < end && (digit_value(s[i]) < base || s[i] == '_')) {
        if (s[i] == '_') {
            if (prev == '_')
                return -1;
        }
        else {
            digits++;
            accumulate(out, &mag, base, digit_value(s[i]));
        }
        prev = s[i];
        i++;
    }
    if (prev == '_')
        return -1;
    if (i == start || digits == 0)
        return -1;
    out->base = base;
    out->digits = (size_t)digits;
    if (error_if_nonzero && (out->big || mag != 0))
        return -1;
    while (i < end && py_isspace(s[i]))
        i++;
    if (i != end)
        return -1;
    finish(out, mag, negative);
    return 0;
}

/* glibc strtol(s, &end, 0) on the NUL-terminated line. Returns the index
 * where parsing stopped; *overflow mirrors errno == ERANGE. */
static size_t
c_strtol0(const uint8_t *s, size_t end, aisb_pyint *out, int *overflow)
{
    size_t i = 0;
    int negative = 0, base = 10;
    uint64_t mag = 0;

    memset(out, 0, sizeof *out);
    *overflow = 0;
    while (i < end && py_isspace(s[i]))
        i++;
    if (i < end && (s[i] == '+' || s[i] == '-')) {
        negative = s[i] == '-';
        i++;
    }
    if (i < end && s[i] == '0') {
        if (i + 1 < end && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
            if (i + 2 < end && digit_value(s[i + 2]) < 16) {
                base = 16;
                i += 2;
            }
            else {
                /* "0x" without hex digits is the number 0 ending before the x. */
                out->value = 0;
                return i + 1;
            }
        }
        else
            base = 8;
    }
    size_t start = i;
    while (i < end && digit_value(s[i]) < base) {
        accumulate(out, &mag, base, digit_value(s[i]));
        i++;
    }
    if (i == start)
        return 0;  /* no conversion: the end pointer is the start of the string */
    finish(out, mag, negative);
    if (out->big) {
        *overflow = 1;
        out->big = 0;
    }
    return i;
}

int
aisb_pyint_opcode(const uint8_t *line, size_t n, aisb_pyint *out, int *is_bool)
{
    *is_bool = 0;
    if (n < 2)
        return -1;
    size_t end = c_strlen(line, n);
    int overflow;
    size_t stop = c_strtol0(line, end, out, &overflow);
    uint8_t at = stop < n ? line[stop] : 0;
    if (!overflow && (at == '\n' || at == 'L') && stop == n - 1) {
        if (n == 3 && (out->value == 0 || out->value == 1))
            *is_bool = 1;
        return 0;
    }
    return aisb_pylong_parse(line, n, 0, out);
}

int
aisb_pylong_opcode(const uint8_t *line, size_t n, aisb_pyint *out)
{
    if (n < 2)
        return -1;
    /* CPython overwrites a trailing 'L' with NUL; parsing then stops there. */
    size_t len = line[n - 2] == 'L' ? n - 2 : n;
    return aisb_pylong_parse(line, len, 0, out);
}

static int
match_word_ci(const uint8_t *s, size_t end, size_t i, const char *w)
{
    size_t k = strlen(w);
    if (end - i < k)
        return 0;
    for (size_t j = 0; j < k; j++) {
        uint8_t c = s[i + j];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c - 'A' + 'a');
        if (c != (uint8_t)w[j])
            return 0;
    }
    return 1;
}

int
aisb_pyfloat_opcode(const uint8_t *line, size_t n)
{
    if (n < 2)
        return -1;
    size_t end = c_strlen(line, n);
    size_t i = 0;
    if (i < end && (line[i] == '+' || line[i] == '-'))
        i++;
    size_t digits = 0;
    while (i < end && line[i] >= '0' && line[i] <= '9') {
        i++;
        digits++;
    }
    if (i < end && line[i] == '.') {
        i++;
        while (i < end && line[i] >= '0' && line[i] <= '9') {
            i++;
            digits++;
        }
    }
    if (digits == 0) {
        /* _Py_parse_inf_or_nan: sign, then inf, infinity or nan. */
        i = 0;
        if (i < end && (line[i] == '+' || line[i] == '-'))
            i++;
        if (match_word_ci(line, end, i, "infinity"))
            i += 8;
        else if (match_word_ci(line, end, i, "inf"))
            i += 3;
        else if (match_word_ci(line, end, i, "nan"))
            i += 3;
        else
            return -1;
    }
    else if (i < end && (line[i] == 'e' || line[i] == 'E')) {
        size_t j = i + 1;
        if (j < end && (line[j] == '+' || line[j] == '-'))
            j++;
        size_t k = j;
        while (k < end && line[k] >= '0' && line[k] <= '9')
            k++;
        if (k > j)
            i = k;  /* an exponent without digits is not consumed */
    }
    /* The end pointer must rest on the newline or on a NUL. */
    return (i == end || line[i] == '\n') ? 0 : -1;
}

static int
emit(aisb_buf *out, const void *p, size_t n)
{
    return out ? aisb_buf_put(out, p, n) : 0;
}

int
aisb_escape_decode(const uint8_t *s, size_t n, aisb_buf *out)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i++];
        if (c != '\\') {
            if (emit(out, &c, 1) < 0)
                return -1;
            continue;
        }
        if (i == n)
            return -1;  /* trailing backslash */
        uint8_t e = s[i++], v;
        switch (e) {
        case '\n':
            continue;
        case '\\': v = '\\'; break;
        case '\'': v = '\''; break;
        case '"': v = '"'; break;
        case 'b': v = '\b'; break;
        case 'f': v = '\f'; break;
        case 't': v = '\t'; break;
        case 'n': v = '\n'; break;
        case 'r': v = '\r'; break;
        case 'v': v = '\v'; break;
        case 'a': v = '\a'; break;
        case '0': case '1': case '2': case '3':
        case '4': case '5': case '6': case '7': {
            unsigned o = (unsigned)(e - '0');
            for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; k++)
                o = (o << 3) + (unsigned)(s[i++] - '0');
            v = (uint8_t)(o & 0xff);  /* CPython stores the low byte */
            break;
        }
        case 'x':
            if (i + 1 < n && digit_value(s[i]) < 16 && digit_value(s[i + 1]) < 16) {
                v = (uint8_t)((digit_value(s[i]) << 4) | digit_value(s[i + 1]));
                i += 2;
                break;
            }
            return -1;  /* invalid \x escape */
        default:
            /* Unknown escapes keep the backslash and re-read the character. */
            v = '\\';
            i--;
            break;
        }
        if (emit(out, &v, 1) < 0)
            return -1;
    }
    return 0;
}

static int
put_utf8(aisb_buf *out, uint32_t ch)
{
    uint8_t b[4];
    size_t k;
    if (ch < 0x80) {
        b[0] = (uint8_t)ch;
        k = 1;
    }
    else if (ch < 0x800) {
        b[0] = (uint8_t)(0xc0 | (ch >> 6));
        b[1] = (uint8_t)(0x80 | (ch & 0x3f));
        k = 2;
    }
    else if (ch < 0x10000) {
        b[0] = (uint8_t)(0xe0 | (ch >> 12));
        b[1] = (uint8_t)(0x80 | ((ch >> 6) & 0x3f));
        b[2] = (uint8_t)(0x80 | (ch & 0x3f));
        k = 3;
    }
    else {
        b[0] = (uint8_t)(0xf0 | (ch >> 18));
        b[1] = (uint8_t)(0x80 | ((ch >> 12) & 0x3f));
        b[2] = (uint8_t)(0x80 | ((ch >> 6) & 0x3f));
        b[3] = (uint8_t)(0x80 | (ch & 0x3f));
        k = 4;
    }
    return emit(out, b, k);
}

int
aisb_raw_unicode_escape_decode(const uint8_t *s, size_t n, aisb_buf *out)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i++];
        if (c != '\\' || i == n) {
            /* Bytes stand for the code points U+0000..U+00FF. */
            if (put_utf8(out, c) < 0)
                return -1;
            continue;
        }
        uint8_t e = s[i++];
        int count = e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (count == 0) {
            /* The backslash and its companion are both literal. */
            if (put_utf8(out, '\\') < 0 || put_utf8(out, e) < 0)
                return -1;
            continue;
        }
        uint32_t ch = 0;
        for (; count; count--, i++) {
            if (i >= n)
                return -1;  /* truncated escape */
            int d = digit_value(s[i]);
            if (d >= 16)
                return -1;
            ch = (ch << 4) | (uint32_t)d;
        }
        if (ch > 0x10ffff)
            return -1;
        if (put_utf8(out, ch) < 0)
            return -1;
    }
    return 0;
}

int
aisb_utf8_valid(const uint8_t *s, size_t n, int allow_surrogates)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t ch, min;
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1; ch = c & 0x1f; min = 0x80;
        }
        else if (c >= 0xe0 && c <= 0xef) {
            k = 2; ch = c & 0x0f; min = 0x800;
        }
        else if (c >= 0xf0 && c <= 0xf4) {
            k = 3; ch = c & 0x07; min = 0x10000;
        }
        else
            return 0;
        if (n - i - 1 < k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            uint8_t cc = s[i + j];
            if ((cc & 0xc0) != 0x80)
                return 0;
            ch = (ch << 6) | (cc & 0x3f);
        }
        if (ch < min || ch > 0x10ffff)
            return 0;
        if (ch >= 0xd800 && ch <= 0xdfff && !allow_surrogates)
            return 0;
        i += k + 1;
    }
    return 1;
}

int
aisb_is_ascii(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] & 0x80)
            return 0;
    return 1;
}
