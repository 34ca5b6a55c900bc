/* The text grammars of the protocol-0 opcodes, as CPython's C unpickler
 * applies them: PyLong_FromString, strtol(base 0), PyOS_string_to_double,
 * PyBytes_DecodeEscape, the raw-unicode-escape codec and the UTF-8 codec.
 *
 * The scanner needs them without a Python runtime (fuzz targets link it
 * alone), and it must agree with CPython on where an argument is valid, so
 * each function follows the CPython routine named beside it. */
#ifndef AISB_PYTEXT_H
#define AISB_PYTEXT_H

#include "aisb.h"

typedef struct {
    int64_t value;  /* valid when !big */
    int big;        /* magnitude does not fit in int64 */
    int negative;
    int base;       /* the base PyLong_FromString settled on */
    size_t digits;  /* digits, underscores not counted */
} aisb_pyint;

/* CPython refuses decimal integer text longer than this (sys.int_info.default_max_str_digits). */
#define AISB_MAX_STR_DIGITS 4300

/* PyLong_FromString(line, NULL, base) on a NUL-terminated copy of the line:
 * parsing stops at the first NUL byte, as it does in C. base is 0 or 10.
 * Returns 0 when CPython accepts the text, -1 when it raises. */
int aisb_pylong_parse(const uint8_t *s, size_t n, int base, aisb_pyint *out);

/* The INT opcode: strtol(base 0) first, PyLong_FromString(base 0) when that
 * doesn't consume the whole line. `line` includes the trailing '\n'.
 * *is_bool is set for the "00"/"01" spellings that load as False/True. */
int aisb_pyint_opcode(const uint8_t *line, size_t n, aisb_pyint *out, int *is_bool);

/* The LONG opcode: an optional trailing 'L' before '\n', then PyLong_FromString(base 0). */
int aisb_pylong_opcode(const uint8_t *line, size_t n, aisb_pyint *out);

/* The FLOAT opcode's grammar (PyOS_string_to_double, then '\n' or NUL must
 * follow). Overflowing exponents are accepted here: CPython raises on them,
 * and accepting more than CPython only makes the scanner read further. */
int aisb_pyfloat_opcode(const uint8_t *line, size_t n);

/* PyBytes_DecodeEscape in strict mode (the STRING opcode's body).
 * With out == NULL these two decoders only validate. */
int aisb_escape_decode(const uint8_t *s, size_t n, aisb_buf *out);

/* The raw-unicode-escape codec (the UNICODE opcode), written out as UTF-8
 * with lone surrogates encoded like 'surrogatepass'. */
int aisb_raw_unicode_escape_decode(const uint8_t *s, size_t n, aisb_buf *out);

/* UTF-8 validation: 'strict' rejects surrogates, 'surrogatepass' allows them. */
int aisb_utf8_valid(const uint8_t *s, size_t n, int allow_surrogates);

int aisb_is_ascii(const uint8_t *s, size_t n);

#endif
