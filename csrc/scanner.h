/* The static opcode scanner: walks pickle streams through pk_decode() and
 * simulates the unpickler's stack, marks and memo closely enough to know what
 * every global, call and BUILD applies to, without running anything.
 *
 * Values are tracked coarsely: strings, numbers, containers and their items,
 * globals, and the results of calls. That is enough to resolve STACK_GLOBAL
 * operands wherever they came from, and to let container code read the
 * plain-data pickles of torch's legacy formats. */
#ifndef AISB_SCANNER_H
#define AISB_SCANNER_H

#include "opcodes.h"
#include "report.h"

/* A stack entry: an immediate value or a reference to a value record. */
typedef uint64_t sv;

enum {
    SV_NONE = 1, SV_TRUE, SV_FALSE, SV_INT, SV_BIGINT, SV_FLOAT,
    SV_STR, SV_BYTES, SV_BYTEARRAY, SV_TUPLE, SV_LIST, SV_DICT, SV_SET, SV_FROZENSET,
    SV_GLOBAL,     /* what GLOBAL/STACK_GLOBAL/INST's class name pushed */
    SV_RESULT,     /* what a call returned */
    SV_PERSID,     /* what persistent_load returned */
    SV_UNKNOWN,    /* EXT results, out-of-band buffers: unknowable statically */
};

typedef struct scanner scanner;

/* Called after each BUILD with the object and its state; may move *pos past
 * raw data the real loader reads from the stream at that point (joblib's
 * arrays). Returns 0, or -1 when the stream cannot continue. */
typedef int (*scan_build_hook)(void *ud, scanner *sc, sv inst, sv state, size_t *pos);

typedef struct {
    int member;            /* report member that owns findings */
    int persistent_load;   /* the stream's loader defines persistent_load (torch's data.pkl) */
    int depth;             /* nesting of embedded scans; deeper scans are refused */
    int quiet_errors;      /* a probe: parse errors are expected and not reported */
    int shared_memo;       /* one memo across pickles (one Unpickler object), not one per pickle.load */
    int module_persids;    /* torch's legacy loader: persistent id ('module', cls, ...) loads as cls */
    scan_build_hook on_build;
    void *hook_data;
} scan_ctx;

scanner *scanner_new(aisb_report *rep, const uint8_t *buf, size_t len, const scan_ctx *ctx);
void scanner_free(scanner *sc);

/* Scan one pickle, from `pos` to its STOP. Returns 0 with *end just past the
 * STOP and *result the unpickled value; -1 when the stream breaks (an error
 * finding has been recorded; findings before the break are kept). */
int scanner_run(scanner *sc, size_t pos, size_t *end, sv *result);

/* Scan pickle after pickle until the data ends. Returns 0 when every byte
 * belongs to a complete pickle, -1 otherwise (finding recorded). */
int scanner_run_all(scanner *sc, size_t pos);

/* Read bytes the way pickle.load would, recording nothing, to decide
 * whether they are a pickle at all. */
enum {
    PROBE_NONE = 0,      /* breaks off without naming anything plausible */
    PROBE_NAMES = 1,     /* breaks off, but after naming identifier-like globals */
    PROBE_COMPLETE = 2,  /* a whole pickle, up to its STOP (*end set) */
};
int scanner_probe(const uint8_t *buf, size_t len, size_t start, int depth, size_t *end);
int aisb_identifier_like(aisb_slice s);

/* ---- reading simulated values (for container code) ---- */
int sv_kind(const scanner *sc, sv v);
int sv_int(const scanner *sc, sv v, int64_t *out);
/* Integers of up to 128 bits, whatever opcode spelled them. */
int sv_int128(const scanner *sc, sv v, __int128 *out);
/* Text of a string value, decoded to UTF-8; the slice lives until scanner_free. */
int sv_text(scanner *sc, sv v, aisb_slice *out);
int sv_bytes(const scanner *sc, sv v, aisb_slice *out);
/* Items of a tuple or list: *n items written to out (at most cap). Returns the item count. */
size_t sv_items(const scanner *sc, sv v, sv *out, size_t cap);
/* dict[key] for a str key; returns 0 when found. */
int sv_dict_get(scanner *sc, sv v, const char *key, sv *out);
/* For SV_GLOBAL and SV_RESULT: the report global index, or -1. */
int sv_global(const scanner *sc, sv v);
/* For SV_RESULT: the callable; for SV_PERSID: the persistent id. */
int sv_inner(const scanner *sc, sv v, sv *out);
/* For SV_RESULT: the argument tuple the callable received. */
int sv_args(const scanner *sc, sv v, sv *out);
/* For SV_RESULT: the state the last BUILD gave it. */
int sv_state(const scanner *sc, sv v, sv *out);
/* module.name of the global behind an SV_GLOBAL or SV_RESULT value, as the
 * file spells it (before any mapping); 0 when it matches `dotted`. */
int sv_global_is(const scanner *sc, sv v, const char *dotted);

/* Whether the next pickles are loaded with a persistent_load (torch's
 * legacy stream gives one to its object pickle only). */
void scanner_set_persistent_load(scanner *sc, int on);
void scanner_set_module_persids(scanner *sc, int on);

/* The member findings are filed under, and the buffer being read. */
int scanner_member(const scanner *sc);
const uint8_t *scanner_buffer(const scanner *sc, size_t *len);

/* Persistent ids met so far, in order. */
size_t scanner_persids(const scanner *sc, const sv **ids);

/* Complete pickles the last scanner_run_all read. */
int scanner_pickles(const scanner *sc);

/* The protocol declared by the last PROTO opcode of the last pickle. */
int scanner_protocol(const scanner *sc);

#endif
