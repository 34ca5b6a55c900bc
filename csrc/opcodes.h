/* Pickle opcode decoding: the one place that knows how many bytes each
 * opcode's argument takes and how CPython's C unpickler reads it. The
 * scanner and the unpickler both walk streams through pk_decode(), so what
 * the scan judged is byte for byte what the loader loads. */
#ifndef AISB_OPCODES_H
#define AISB_OPCODES_H

#include "aisb.h"
#include "pytext.h"

enum {
    PK_MARK = '(', PK_STOP = '.', PK_POP = '0', PK_POP_MARK = '1', PK_DUP = '2',
    PK_FLOAT = 'F', PK_INT = 'I', PK_BININT = 'J', PK_BININT1 = 'K', PK_LONG = 'L',
    PK_BININT2 = 'M', PK_NONE = 'N', PK_PERSID = 'P', PK_BINPERSID = 'Q',
    PK_REDUCE = 'R', PK_STRING = 'S', PK_BINSTRING = 'T', PK_SHORT_BINSTRING = 'U',
    PK_UNICODE = 'V', PK_BINUNICODE = 'X', PK_APPEND = 'a', PK_BUILD = 'b',
    PK_GLOBAL = 'c', PK_DICT = 'd', PK_EMPTY_DICT = '}', PK_APPENDS = 'e',
    PK_GET = 'g', PK_BINGET = 'h', PK_INST = 'i', PK_LONG_BINGET = 'j',
    PK_LIST = 'l', PK_EMPTY_LIST = ']', PK_OBJ = 'o', PK_PUT = 'p',
    PK_BINPUT = 'q', PK_LONG_BINPUT = 'r', PK_SETITEM = 's', PK_TUPLE = 't',
    PK_EMPTY_TUPLE = ')', PK_SETITEMS = 'u', PK_BINFLOAT = 'G',
    /* protocol 2 */
    PK_PROTO = 0x80, PK_NEWOBJ = 0x81, PK_EXT1 = 0x82, PK_EXT2 = 0x83, PK_EXT4 = 0x84,
    PK_TUPLE1 = 0x85, PK_TUPLE2 = 0x86, PK_TUPLE3 = 0x87, PK_NEWTRUE = 0x88,
    PK_NEWFALSE = 0x89, PK_LONG1 = 0x8a, PK_LONG4 = 0x8b,
    /* protocol 3 */
    PK_BINBYTES = 'B', PK_SHORT_BINBYTES = 'C',
    /* protocol 4 */
    PK_SHORT_BINUNICODE = 0x8c, PK_BINUNICODE8 = 0x8d, PK_BINBYTES8 = 0x8e,
    PK_EMPTY_SET = 0x8f, PK_ADDITEMS = 0x90, PK_FROZENSET = 0x91, PK_NEWOBJ_EX = 0x92,
    PK_STACK_GLOBAL = 0x93, PK_MEMOIZE = 0x94, PK_FRAME = 0x95,
    /* protocol 5 */
    PK_BYTEARRAY8 = 0x96, PK_NEXT_BUFFER = 0x97, PK_READONLY_BUFFER = 0x98,
};

#define PK_HIGHEST_PROTOCOL 5

/* How a string argument turns into text. */
enum {
    PK_TEXT_UTF8 = 1,    /* BINUNICODE family: UTF-8 with surrogatepass */
    PK_TEXT_RAWESC,      /* UNICODE: raw-unicode-escape */
    PK_TEXT_ESCAPED,     /* STRING: quoted, backslash escapes */
    PK_TEXT_8BIT,        /* BINSTRING family: bytes, decoded by the unpickler's encoding */
};

/* Frame findings attached to an opcode (CPython gh-154848). */
enum {
    PK_FRAME_STRADDLE = 1,  /* the opcode or its argument runs past the end of its frame */
    PK_FRAME_OVERLAP = 2,   /* a FRAME begins before the previous frame ended */
    PK_FRAME_SPAN = 4,      /* the opcode spans a frame end, but each of its reads stays on one side */
};

typedef struct {
    uint8_t code;
    uint8_t text;           /* PK_TEXT_* for string arguments */
    uint8_t frame_flags;    /* PK_FRAME_* */
    uint8_t is_bool;        /* INT spelled 00 or 01 */
    uint8_t alt;            /* a fixed-size read or line straddled a frame end: see alt_pos */
    uint8_t digit_limit;    /* INT/LONG text longer than CPython's int_max_str_digits */
    size_t offset;          /* of the opcode byte, from the start of the buffer */
    size_t end;             /* one past the argument */
    size_t frame_start;     /* offset of the FRAME opcode that holds this one, when framed */
    size_t alt_pos;         /* where a C unpickler reading a file re-reads the straddling argument */
    int64_t n;              /* integer argument: BININT*, EXT code, binary memo index, PROTO, FRAME length */
    aisb_pyint pyint;       /* INT, LONG, and the text memo indices */
    aisb_slice s;           /* payload: string/bytes/LONG1/BINFLOAT bytes/PERSID line; module for GLOBAL/INST */
    aisb_slice s2;          /* name for GLOBAL/INST */
} pk_op;

typedef struct {
    size_t offset;
    uint8_t code;
    char message[160];
} pk_error;

typedef struct {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    size_t frame_start;
    size_t frame_end;       /* 0 when not inside a frame */
    size_t lim;             /* reads below this need no frame or length check: min(frame_end or len, len) */
    int forced;             /* >= 0: the next opcode is this, its argument starts at pos */
} pk_reader;

void pk_reader_init(pk_reader *r, const uint8_t *buf, size_t len, size_t start);

/* Continue at `pos`, outside any frame (raw data the loader read itself). */
void pk_reader_seek(pk_reader *r, size_t pos);

/* Opcodes pk_decode reads inline when they sit wholly below r->lim: the
 * bulk of real pickles. pk_fast_len[code] is the opcode's whole length for
 * those with no argument or a fixed-size one (BININT*, BINGET/BINPUT and
 * their LONG_ forms, BINFLOAT), 0 for every other byte. */
extern const uint8_t pk_fast_len[256];

/* The general decoder (every opcode, every frame edge, every error) and the
 * one for BINUNICODE/SHORT_BINUNICODE; both expect op's common fields reset. */
int pk_decode_general(pk_reader *r, pk_op *op, pk_error *err);
int pk_decode_utf8(pk_reader *r, pk_op *op, pk_error *err);

/* Decode the opcode at r->pos and advance past it. Returns 0 on success,
 * -1 on a malformed or truncated argument (err filled in).
 *
 * Inline because it runs once per opcode in the scanner and the unpickler.
 * The fixed-size opcodes are read here, without a branch per kind, when the
 * opcode and 8 bytes after it lie below r->lim (no frame edge, no
 * truncation, nothing to re-read): exactly what the general path would
 * compute. Anything else, every error included, goes the general way. */
static inline int
pk_decode(pk_reader *r, pk_op *op, pk_error *err)
{
    /* Only the fields every consumer reads are reset; argument decoders set
     * the rest for the opcodes that have them. */
    op->text = op->frame_flags = op->is_bool = op->alt = op->digit_limit = 0;
    op->s2.p = NULL;
    op->s2.n = 0;
    size_t pos = r->pos;
    const uint8_t *p = r->buf + pos;
    size_t used;
    if (r->forced >= 0 || r->lim - pos < 9 || (used = pk_fast_len[p[0]]) == 0) {
        op->n = 0;
        op->s.p = NULL;
        op->s.n = 0;
        if (r->forced < 0 && r->lim - pos >= 9 && (p[0] == PK_SHORT_BINUNICODE || p[0] == PK_BINUNICODE))
            return pk_decode_utf8(r, op, err);
        return pk_decode_general(r, op, err);
    }
    static const uint64_t mask[10] = {0, 0, 0xff, 0xffff, 0, 0xffffffffu, 0, 0, 0, 0};
    uint64_t arg = aisb_le(p + 1, 8) & mask[used];
    op->code = p[0];
    op->n = p[0] == PK_BININT ? (int64_t)(int32_t)(uint32_t)arg : (int64_t)arg;
    op->s.p = used == 9 ? p + 1 : NULL;  /* BINFLOAT's 8 bytes */
    op->s.n = used == 9 ? 8 : 0;
    op->offset = pos;
    op->end = r->pos = pos + used;
    return 0;
}

/* "BINUNICODE" etc., or NULL for a byte that is no opcode. */
const char *pk_opcode_name(uint8_t code);

/* The lowest protocol that has the opcode, or -1. */
int pk_opcode_protocol(uint8_t code);

void pk_error_set(pk_error *err, size_t offset, uint8_t code, const char *fmt, ...) AISB_PRINTF(4, 5);

#endif
