#include "opcodes.h"

#include <stdarg.h>
#include <stdio.h>

typedef struct {
    const char *name;
    int8_t protocol;
} opinfo;

static const opinfo OPS[256] = {
    [PK_MARK] = {"MARK", 0}, [PK_STOP] = {"STOP", 0}, [PK_POP] = {"POP", 0},
    [PK_POP_MARK] = {"POP_MARK", 1}, [PK_DUP] = {"DUP", 0}, [PK_FLOAT] = {"FLOAT", 0},
    [PK_INT] = {"INT", 0}, [PK_BININT] = {"BININT", 1}, [PK_BININT1] = {"BININT1", 1},
    [PK_LONG] = {"LONG", 0}, [PK_BININT2] = {"BININT2", 1}, [PK_NONE] = {"NONE", 0},
    [PK_PERSID] = {"PERSID", 0}, [PK_BINPERSID] = {"BINPERSID", 1},
    [PK_REDUCE] = {"REDUCE", 0}, [PK_STRING] = {"STRING", 0},
    [PK_BINSTRING] = {"BINSTRING", 1}, [PK_SHORT_BINSTRING] = {"SHORT_BINSTRING", 1},
    [PK_UNICODE] = {"UNICODE", 0}, [PK_BINUNICODE] = {"BINUNICODE", 1},
    [PK_APPEND] = {"APPEND", 0}, [PK_BUILD] = {"BUILD", 0}, [PK_GLOBAL] = {"GLOBAL", 0},
    [PK_DICT] = {"DICT", 0}, [PK_EMPTY_DICT] = {"EMPTY_DICT", 1},
    [PK_APPENDS] = {"APPENDS", 1}, [PK_GET] = {"GET", 0}, [PK_BINGET] = {"BINGET", 1},
    [PK_INST] = {"INST", 0}, [PK_LONG_BINGET] = {"LONG_BINGET", 1}, [PK_LIST] = {"LIST", 0},
    [PK_EMPTY_LIST] = {"EMPTY_LIST", 1}, [PK_OBJ] = {"OBJ", 1}, [PK_PUT] = {"PUT", 0},
    [PK_BINPUT] = {"BINPUT", 1}, [PK_LONG_BINPUT] = {"LONG_BINPUT", 1},
    [PK_SETITEM] = {"SETITEM", 0}, [PK_TUPLE] = {"TUPLE", 0},
    [PK_EMPTY_TUPLE] = {"EMPTY_TUPLE", 1}, [PK_SETITEMS] = {"SETITEMS", 1},
    [PK_BINFLOAT] = {"BINFLOAT", 1},
    [PK_PROTO] = {"PROTO", 2}, [PK_NEWOBJ] = {"NEWOBJ", 2}, [PK_EXT1] = {"EXT1", 2},
    [PK_EXT2] = {"EXT2", 2}, [PK_EXT4] = {"EXT4", 2}, [PK_TUPLE1] = {"TUPLE1", 2},
    [PK_TUPLE2] = {"TUPLE2", 2}, [PK_TUPLE3] = {"TUPLE3", 2}, [PK_NEWTRUE] = {"NEWTRUE", 2},
    [PK_NEWFALSE] = {"NEWFALSE", 2}, [PK_LONG1] = {"LONG1", 2}, [PK_LONG4] = {"LONG4", 2},
    [PK_BINBYTES] = {"BINBYTES", 3}, [PK_SHORT_BINBYTES] = {"SHORT_BINBYTES", 3},
    [PK_SHORT_BINUNICODE] = {"SHORT_BINUNICODE", 4}, [PK_BINUNICODE8] = {"BINUNICODE8", 4},
    [PK_BINBYTES8] = {"BINBYTES8", 4}, [PK_EMPTY_SET] = {"EMPTY_SET", 4},
    [PK_ADDITEMS] = {"ADDITEMS", 4}, [PK_FROZENSET] = {"FROZENSET", 4},
    [PK_NEWOBJ_EX] = {"NEWOBJ_EX", 4}, [PK_STACK_GLOBAL] = {"STACK_GLOBAL", 4},
    [PK_MEMOIZE] = {"MEMOIZE", 4}, [PK_FRAME] = {"FRAME", 4},
    [PK_BYTEARRAY8] = {"BYTEARRAY8", 5}, [PK_NEXT_BUFFER] = {"NEXT_BUFFER", 5},
    [PK_READONLY_BUFFER] = {"READONLY_BUFFER", 5},
};

const uint8_t pk_fast_len[256] = {
    [PK_MARK] = 1, [PK_STOP] = 1, [PK_POP] = 1, [PK_POP_MARK] = 1, [PK_DUP] = 1, [PK_NONE] = 1,
    [PK_BINPERSID] = 1, [PK_REDUCE] = 1, [PK_APPEND] = 1, [PK_BUILD] = 1, [PK_DICT] = 1,
    [PK_EMPTY_DICT] = 1, [PK_APPENDS] = 1, [PK_LIST] = 1, [PK_EMPTY_LIST] = 1, [PK_OBJ] = 1,
    [PK_SETITEM] = 1, [PK_TUPLE] = 1, [PK_EMPTY_TUPLE] = 1, [PK_SETITEMS] = 1, [PK_NEWOBJ] = 1,
    [PK_TUPLE1] = 1, [PK_TUPLE2] = 1, [PK_TUPLE3] = 1, [PK_NEWTRUE] = 1, [PK_NEWFALSE] = 1,
    [PK_EMPTY_SET] = 1, [PK_ADDITEMS] = 1, [PK_FROZENSET] = 1, [PK_NEWOBJ_EX] = 1,
    [PK_STACK_GLOBAL] = 1, [PK_MEMOIZE] = 1, [PK_NEXT_BUFFER] = 1, [PK_READONLY_BUFFER] = 1,
    [PK_BININT1] = 2, [PK_BINGET] = 2, [PK_BINPUT] = 2, [PK_BININT2] = 3,
    [PK_BININT] = 5, [PK_LONG_BINGET] = 5, [PK_LONG_BINPUT] = 5, [PK_BINFLOAT] = 9,
};

const char *
pk_opcode_name(uint8_t code)
{
    return OPS[code].name;
}

int
pk_opcode_protocol(uint8_t code)
{
    return OPS[code].name ? OPS[code].protocol : -1;
}

void
pk_error_set(pk_error *err, size_t offset, uint8_t code, const char *fmt, ...)
{
    va_list ap;
    err->offset = offset;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

void
pk_reader_init(pk_reader *r, const uint8_t *buf, size_t len, size_t start)
{
    r->buf = buf;
    r->len = len;
    r->pos = start;
    r->frame_start = 0;
    r->frame_end = 0;
    r->lim = len;
    r->forced = -1;
}

void
pk_reader_seek(pk_reader *r, size_t pos)
{
    r->pos = pos;
    r->frame_end = 0;
    r->lim = r->len;
}

static void
set_frame(pk_reader *r, size_t start, size_t end)
{
    r->frame_start = start;
    r->frame_end = end;
    r->lim = end && end < r->len ? end : r->len;
}

/* ---- reads, each checked against the end of the buffer ---- */

static int
truncated(pk_op *op, pk_error *err)
{
    pk_error_set(err, op->offset, op->code, "pickle data was truncated in the argument of %s",
                 pk_opcode_name(op->code));
    return -1;
}

/* Frames are checked per read, as Python's _Unframer and CPython >= 3.13.15
 * check them: a read that starts inside a frame must end inside it; one that
 * starts exactly at its end leaves the frame. A straddling fixed-size read or
 * line is what older C unpicklers reading a file re-read from the frame's
 * end (dropping the part inside the frame); bulk byte payloads they read
 * straight through. */
static void
frame_read(pk_reader *r, pk_op *op, size_t start, size_t n, int bulk)
{
    if (r->frame_end == 0)
        return;
    if (start >= r->frame_end) {
        set_frame(r, r->frame_start, 0);
        return;
    }
    if (n > r->frame_end - start) {
        op->frame_flags |= PK_FRAME_STRADDLE;
        op->frame_start = r->frame_start;
        if (!bulk && !op->alt) {
            op->alt = 1;
            op->alt_pos = r->frame_end;
        }
        set_frame(r, r->frame_start, 0);
    }
}

/* Below r->lim a read is inside the buffer and inside the current frame (if
 * any), so only reads that reach r->lim take the checks above. */
static inline int
read_n(pk_reader *r, pk_op *op, size_t n, int bulk, const uint8_t **out)
{
    if (n > r->lim - r->pos) {
        if (n > r->len - r->pos)
            return -1;
        frame_read(r, op, r->pos, n, bulk);
    }
    *out = r->buf + r->pos;
    r->pos += n;
    return 0;
}

static inline int
read_fixed(pk_reader *r, pk_op *op, pk_error *err, int nbytes, uint64_t *out)
{
    const uint8_t *p;
    if (read_n(r, op, (size_t)nbytes, 0, &p) < 0)
        return truncated(op, err);
    *out = aisb_le(p, nbytes);
    return 0;
}

/* A line, including its '\n'. */
static int
read_line(pk_reader *r, pk_op *op, pk_error *err, aisb_slice *line)
{
    const uint8_t *start = r->buf + r->pos;
    const uint8_t *nl = memchr(start, '\n', r->len - r->pos);
    if (nl == NULL) {
        pk_error_set(err, op->offset, op->code, "pickle data was truncated: no newline ends the argument of %s",
                     pk_opcode_name(op->code));
        return -1;
    }
    line->p = start;
    line->n = (size_t)(nl - start) + 1;
    if (line->n > r->lim - r->pos)
        frame_read(r, op, r->pos, line->n, 0);
    r->pos += line->n;
    return 0;
}

/* calc_binsize: an unsigned size that must fit in Py_ssize_t. */
static int
read_size(pk_reader *r, pk_op *op, pk_error *err, int nbytes, size_t *size)
{
    uint64_t x;
    if (read_fixed(r, op, err, nbytes, &x) < 0)
        return -1;
    if (x > (uint64_t)INT64_MAX || x > (uint64_t)SIZE_MAX) {
        pk_error_set(err, op->offset, op->code, "%s size exceeds the system's maximum", pk_opcode_name(op->code));
        return -1;
    }
    *size = (size_t)x;
    return 0;
}

static int
read_counted(pk_reader *r, pk_op *op, pk_error *err, int nbytes)
{
    size_t size;
    const uint8_t *p;
    if (read_size(r, op, err, nbytes, &size) < 0)
        return -1;
    /* The C unpickler reads bytes payloads with readinto, the rest with read. */
    int bulk = op->code == PK_BINBYTES || op->code == PK_SHORT_BINBYTES || op->code == PK_BINBYTES8 ||
               op->code == PK_BYTEARRAY8;
    if (read_n(r, op, size, bulk, &p) < 0)
        return truncated(op, err);
    op->s = aisb_slice_make(p, size);
    op->n = (int64_t)size;
    return 0;
}

static int
bad_text(pk_op *op, pk_error *err, const char *what)
{
    pk_error_set(err, op->offset, op->code, "%s argument is not valid %s", pk_opcode_name(op->code), what);
    return -1;
}

/* ---- one small decoder per argument shape ---- */

static int
decode_counted_text(pk_reader *r, pk_op *op, pk_error *err, int nbytes, int text)
{
    if (read_counted(r, op, err, nbytes) < 0)
        return -1;
    op->text = (uint8_t)text;
    if (text == PK_TEXT_UTF8 && !aisb_utf8_valid(op->s.p, op->s.n, 1))
        return bad_text(op, err, "UTF-8");
    return 0;
}

static int
decode_string(pk_reader *r, pk_op *op, pk_error *err)
{
    aisb_slice line;
    if (read_line(r, op, err, &line) < 0)
        return -1;
    size_t len = line.n - 1;
    const uint8_t *s = line.p;
    if (!(len >= 2 && s[0] == s[len - 1] && (s[0] == '\'' || s[0] == '"'))) {
        pk_error_set(err, op->offset, op->code, "the STRING opcode argument must be quoted");
        return -1;
    }
    op->s = aisb_slice_make(s + 1, len - 2);
    op->text = PK_TEXT_ESCAPED;
    if (aisb_escape_decode(op->s.p, op->s.n, NULL) < 0)
        return bad_text(op, err, "escaped bytes");
    return 0;
}

static int
decode_unicode(pk_reader *r, pk_op *op, pk_error *err)
{
    aisb_slice line;
    if (read_line(r, op, err, &line) < 0)
        return -1;
    op->s = aisb_slice_make(line.p, line.n - 1);
    op->text = PK_TEXT_RAWESC;
    if (aisb_raw_unicode_escape_decode(op->s.p, op->s.n, NULL) < 0)
        return bad_text(op, err, "raw-unicode-escape");
    return 0;
}

/* GLOBAL (UTF-8) and INST (ASCII): a module line and a name line. */
static int
decode_two_lines(pk_reader *r, pk_op *op, pk_error *err, int ascii_only)
{
    aisb_slice a, b;
    if (read_line(r, op, err, &a) < 0)
        return -1;
    if (a.n < 2) {
        pk_error_set(err, op->offset, op->code, "%s has an empty module name", pk_opcode_name(op->code));
        return -1;
    }
    if (read_line(r, op, err, &b) < 0)
        return -1;
    if (b.n < 2) {
        pk_error_set(err, op->offset, op->code, "%s has an empty name", pk_opcode_name(op->code));
        return -1;
    }
    op->s = aisb_slice_make(a.p, a.n - 1);
    op->s2 = aisb_slice_make(b.p, b.n - 1);
    int ok = ascii_only ? aisb_is_ascii(op->s.p, op->s.n) && aisb_is_ascii(op->s2.p, op->s2.n)
                        : aisb_utf8_valid(op->s.p, op->s.n, 0) && aisb_utf8_valid(op->s2.p, op->s2.n, 0);
    if (!ok)
        return bad_text(op, err, ascii_only ? "ASCII" : "UTF-8");
    return 0;
}

static int
decode_text_memo_index(pk_reader *r, pk_op *op, pk_error *err)
{
    aisb_slice line;
    if (read_line(r, op, err, &line) < 0)
        return -1;
    if (line.n < 2 || aisb_pylong_parse(line.p, line.n, 10, &op->pyint) < 0) {
        pk_error_set(err, op->offset, op->code, "%s index is not a decimal integer", pk_opcode_name(op->code));
        return -1;
    }
    if (op->pyint.big || op->pyint.value < 0) {
        /* GET of a negative or huge index finds nothing; PUT refuses it. */
        pk_error_set(err, op->offset, op->code, "%s index is negative or too large", pk_opcode_name(op->code));
        return -1;
    }
    op->n = op->pyint.value;
    op->s = aisb_slice_make(line.p, line.n - 1);
    return 0;
}

static int
decode_int_text(pk_reader *r, pk_op *op, pk_error *err)
{
    aisb_slice line;
    int is_bool = 0, rc;
    if (read_line(r, op, err, &line) < 0)
        return -1;
    if (op->code == PK_INT)
        rc = aisb_pyint_opcode(line.p, line.n, &op->pyint, &is_bool);
    else
        rc = aisb_pylong_opcode(line.p, line.n, &op->pyint);
    if (rc < 0) {
        pk_error_set(err, op->offset, op->code, "could not convert the %s argument to int", pk_opcode_name(op->code));
        return -1;
    }
    op->is_bool = (uint8_t)is_bool;
    op->digit_limit = op->pyint.big && op->pyint.base == 10 && op->pyint.digits > AISB_MAX_STR_DIGITS;
    op->s = aisb_slice_make(line.p, line.n);
    return 0;
}

static int
decode_float_text(pk_reader *r, pk_op *op, pk_error *err)
{
    aisb_slice line;
    if (read_line(r, op, err, &line) < 0)
        return -1;
    if (aisb_pyfloat_opcode(line.p, line.n) < 0) {
        pk_error_set(err, op->offset, op->code, "could not convert the FLOAT argument to float");
        return -1;
    }
    op->s = aisb_slice_make(line.p, line.n);
    return 0;
}

static int
decode_long_binary(pk_reader *r, pk_op *op, pk_error *err, int nbytes)
{
    uint64_t raw;
    size_t size;
    const uint8_t *p;
    if (read_fixed(r, op, err, nbytes, &raw) < 0)
        return -1;
    if (nbytes == 4) {
        if ((int32_t)(uint32_t)raw < 0) {
            pk_error_set(err, op->offset, op->code, "LONG pickle has negative byte count");
            return -1;
        }
        size = (size_t)(int32_t)(uint32_t)raw;
    }
    else
        size = (size_t)raw;
    if (read_n(r, op, size, 0, &p) < 0)
        return truncated(op, err);
    op->s = aisb_slice_make(p, size);
    return 0;
}

static int
decode_ext(pk_reader *r, pk_op *op, pk_error *err, int nbytes)
{
    uint64_t raw;
    if (read_fixed(r, op, err, nbytes, &raw) < 0)
        return -1;
    op->n = nbytes == 4 ? (int64_t)(int32_t)(uint32_t)raw : (int64_t)raw;
    if (op->n <= 0) {
        pk_error_set(err, op->offset, op->code, "EXT specifies code <= 0");
        return -1;
    }
    return 0;
}

static int
decode_frame(pk_reader *r, pk_op *op, pk_error *err)
{
    size_t size;
    if (read_size(r, op, err, 8, &size) < 0)
        return -1;
    if (size > r->len - r->pos) {
        pk_error_set(err, op->offset, op->code, "FRAME of %zu bytes runs past the end of the data", size);
        return -1;
    }
    op->n = (int64_t)size;
    return 0;
}

static int
decode_argument(pk_reader *r, pk_op *op, pk_error *err)
{
    uint64_t x;
    aisb_slice line;

    switch (op->code) {
    case PK_BININT:
        if (read_fixed(r, op, err, 4, &x) < 0)
            return -1;
        op->n = (int32_t)(uint32_t)x;
        return 0;
    case PK_BININT1:
    case PK_BINGET:
    case PK_BINPUT:
        if (read_fixed(r, op, err, 1, &x) < 0)
            return -1;
        op->n = (int64_t)x;
        return 0;
    case PK_BININT2:
        if (read_fixed(r, op, err, 2, &x) < 0)
            return -1;
        op->n = (int64_t)x;
        return 0;
    case PK_LONG_BINGET:
    case PK_LONG_BINPUT:
        if (read_fixed(r, op, err, 4, &x) < 0)
            return -1;
        op->n = (int64_t)x;
        return 0;
    case PK_PROTO:
        if (read_fixed(r, op, err, 1, &x) < 0)
            return -1;
        op->n = (int64_t)x;
        if (x > PK_HIGHEST_PROTOCOL) {
            pk_error_set(err, op->offset, op->code, "unsupported pickle protocol: %d", (int)x);
            return -1;
        }
        return 0;
    case PK_BINFLOAT: {
        const uint8_t *p;
        if (read_n(r, op, 8, 0, &p) < 0)
            return truncated(op, err);
        op->s = aisb_slice_make(p, 8);
        return 0;
    }
    case PK_INT:
    case PK_LONG:
        return decode_int_text(r, op, err);
    case PK_FLOAT:
        return decode_float_text(r, op, err);
    case PK_LONG1:
        return decode_long_binary(r, op, err, 1);
    case PK_LONG4:
        return decode_long_binary(r, op, err, 4);
    case PK_STRING:
        return decode_string(r, op, err);
    case PK_BINSTRING:
        return decode_counted_text(r, op, err, 4, PK_TEXT_8BIT);
    case PK_SHORT_BINSTRING:
        return decode_counted_text(r, op, err, 1, PK_TEXT_8BIT);
    case PK_UNICODE:
        return decode_unicode(r, op, err);
    case PK_BINUNICODE:
        return decode_counted_text(r, op, err, 4, PK_TEXT_UTF8);
    case PK_SHORT_BINUNICODE:
        return decode_counted_text(r, op, err, 1, PK_TEXT_UTF8);
    case PK_BINUNICODE8:
        return decode_counted_text(r, op, err, 8, PK_TEXT_UTF8);
    case PK_BINBYTES:
        return read_counted(r, op, err, 4);
    case PK_SHORT_BINBYTES:
        return read_counted(r, op, err, 1);
    case PK_BINBYTES8:
    case PK_BYTEARRAY8:
        return read_counted(r, op, err, 8);
    case PK_GLOBAL:
        return decode_two_lines(r, op, err, 0);
    case PK_INST:
        return decode_two_lines(r, op, err, 1);
    case PK_GET:
    case PK_PUT:
        return decode_text_memo_index(r, op, err);
    case PK_PERSID:
        if (read_line(r, op, err, &line) < 0)
            return -1;
        op->s = aisb_slice_make(line.p, line.n - 1);
        if (!aisb_is_ascii(op->s.p, op->s.n))
            return bad_text(op, err, "ASCII");
        return 0;
    case PK_EXT1:
        return decode_ext(r, op, err, 1);
    case PK_EXT2:
        return decode_ext(r, op, err, 2);
    case PK_EXT4:
        return decode_ext(r, op, err, 4);
    case PK_FRAME:
        return decode_frame(r, op, err);
    default:
        return 0;  /* the opcode has no argument */
    }
}

int
pk_decode_general(pk_reader *r, pk_op *op, pk_error *err)
{
    op->offset = r->pos;
    size_t frame_end = r->frame_end, frame_start = r->frame_start;
    if (r->forced >= 0) {
        /* An opcode whose argument is read from elsewhere (see pk_op.alt). */
        op->code = (uint8_t)r->forced;
        r->forced = -1;
    }
    else {
        if (r->pos >= r->lim) {
            if (r->pos >= r->len) {
                pk_error_set(err, r->pos, 0, "pickle data was truncated: no STOP opcode");
                return -1;
            }
            frame_read(r, op, r->pos, 1, 0);
        }
        op->code = r->buf[r->pos++];
    }
    if (OPS[op->code].name == NULL) {
        pk_error_set(err, op->offset, op->code, "invalid load key 0x%02x", op->code);
        return -1;
    }
    if (decode_argument(r, op, err) < 0)
        return -1;
    op->end = r->pos;
    if (op->end > frame_end && frame_end && op->offset < frame_end && !(op->frame_flags & PK_FRAME_STRADDLE)) {
        op->frame_flags |= PK_FRAME_SPAN;
        op->frame_start = frame_start;
    }
    if (op->code == PK_FRAME) {
        if (r->frame_end && r->pos < r->frame_end) {
            op->frame_flags |= PK_FRAME_OVERLAP;
            op->frame_start = r->frame_start;
        }
        set_frame(r, op->offset, op->n ? op->end + (size_t)op->n : 0);
    }
    return 0;
}

int
pk_decode_utf8(pk_reader *r, pk_op *op, pk_error *err)
{
    const uint8_t *p = r->buf + r->pos;
    int width = p[0] == PK_SHORT_BINUNICODE ? 1 : 4;
    size_t n = (size_t)aisb_le(p + 1, width), room = r->lim - r->pos - 1 - (size_t)width;
    if (n > room || !aisb_utf8_valid(p + 1 + width, n, 1))
        return pk_decode_general(r, op, err);
    size_t used = 1 + (size_t)width + n;
    op->code = p[0];
    op->text = PK_TEXT_UTF8;
    op->s = aisb_slice_make(p + 1 + width, n);
    op->n = (int64_t)n;
    op->offset = r->pos;
    op->end = r->pos += used;
    return 0;
}
