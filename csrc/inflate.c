/* inflate.c: a raw DEFLATE (RFC 1951) decoder for untrusted input.
 *
 * Design notes
 * ------------
 * Everything lives in one struct on the caller's stack: no allocation, no globals, no
 * recursion, so the decoder is reentrant and its memory use is fixed (about 18 KiB of
 * stack at the deepest point).
 *
 * Bits are read LSB-first into a 64-bit buffer. A refill tops the buffer up to at least
 * 56 bits whenever input remains, which covers the longest literal/length code, its
 * extra bits, the longest distance code and its extra bits (15 + 5 + 15 + 13 = 48), so
 * one refill per symbol is enough. When input runs out, the bits above the valid count
 * read as zero; every consumer compares the bits it needs against the valid count, so
 * running out is reported as truncation rather than silently decoding padding.
 *
 * Huffman codes are decoded with a two-level table: a primary table indexed by the next
 * `root` bits (at most 10 for literal/length, 8 for distance codes, fewer when the code
 * is shorter), whose entries either decode a symbol directly (codes of up to `root`
 * bits, replicated over the unused high bits) or point at a subtable indexed by the bits
 * that follow. Codes are limited to 15 bits, so subtables are small.
 *
 * Work is linear in the input and output: a table build costs at most a few thousand
 * steps and every dynamic block that asks for one spends several bytes of header on it
 * (primary tables shrink to the longest code, so tiny codes are cheap), while the fixed
 * tables are built at most once per call.
 *
 * zlib compatibility
 * ------------------
 * The stream is accepted exactly when zlib's inflate() (windowBits -15) accepts it:
 *   - over-subscribed codes are always rejected;
 *   - an incomplete code is rejected, except that a literal/length or distance code may
 *     consist of a single code of one bit (for literal/length that is necessarily the
 *     end-of-block code; the other one-bit pattern is invalid when used); a distance
 *     code may also be empty (any use of it is invalid). A code-length code must be
 *     complete;
 *   - HLIT above 286 or HDIST above 30 is rejected in the header, as zlib does, even
 *     though RFC 1951 lets HDIST count 32 codes;
 *   - literal/length symbols 286 and 287 and distance symbols 30 and 31 (reachable only
 *     in fixed-Huffman blocks) are invalid when used;
 *   - length symbol 284 with all extra bits set (length 258) is accepted, as zlib does;
 *   - input after the final block is left unread.
 * For an invalid stream we report BAD_DATA where zlib reports an error, and TRUNCATED
 * where zlib would wait for more input, with one exception: a dynamic header whose
 * code-length code is empty is rejected at once, whereas zlib reads every length as a
 * one-bit zero and fails only after all of them ("missing end-of-block"), so a stream
 * cut short inside such a header is BAD_DATA here and truncated to zlib. A stream that
 * both overflows out_cap and is damaged later reports whichever comes first.
 */
#include "inflate.h"

#include <string.h>

/* ---- table entries ------------------------------------------------------------------

   One uint32_t per entry, so that a lookup is a single load:
     bits  0..4   length of the code in bits (for a subtable link: unused)
     bits  5..8   number of extra bits that follow the code (for a link: subtable index bits)
     bits  9..11  kind
     bits 16..31  value: literal byte, length/distance base, code-length symbol, or
                  subtable offset */

enum entry_kind {
    KIND_LITERAL = 0,   /* also used for code-length symbols 0..18 */
    KIND_BASE,          /* a length or distance: value + extra bits */
    KIND_END,           /* end of block */
    KIND_LINK,          /* code is longer than the root: look in a subtable */
    KIND_INVALID,       /* a code that no valid stream may use */
};

static inline uint32_t
make_entry(enum entry_kind kind, unsigned code_len, unsigned extra, unsigned value)
{
    return (uint32_t)code_len | ((uint32_t)extra << 5) | ((uint32_t)kind << 9)
           | ((uint32_t)value << 16);
}

static inline unsigned entry_len(uint32_t e) { return e & 0x1f; }
static inline unsigned entry_extra(uint32_t e) { return (e >> 5) & 0xf; }
static inline unsigned entry_kind(uint32_t e) { return (e >> 9) & 0x7; }
static inline unsigned entry_value(uint32_t e) { return e >> 16; }

#define MAX_CODE_BITS 15
#define LITLEN_ROOT 10
#define DIST_ROOT 8
#define CODELEN_BITS 7  /* code-length codes are at most 7 bits: one level suffices */

/* Worst-case table sizes. Subtables exist only for complete codes (an incomplete code
   is accepted only when its longest code has one bit). In a complete code, a subtable
   of 2^k entries is needed only for a prefix under which at least k + 1 symbols hang,
   and 2^k / (k + 1) grows with k, so the total is largest when every subtable has the
   maximum depth (15 - ROOT): for 288 literal/length symbols that is 48 subtables of 32
   entries, for 32 distance symbols 4 subtables of 128. build_table() still checks. */
#define LITLEN_TABLE_SIZE ((1u << LITLEN_ROOT) + (288u / (MAX_CODE_BITS - LITLEN_ROOT + 1)) \
                           * (1u << (MAX_CODE_BITS - LITLEN_ROOT)))
#define DIST_TABLE_SIZE ((1u << DIST_ROOT) + (32u / (MAX_CODE_BITS - DIST_ROOT + 1)) \
                         * (1u << (MAX_CODE_BITS - DIST_ROOT)))
#define CODELEN_TABLE_SIZE (1u << CODELEN_BITS)
#define FIXED_LITLEN_TABLE_SIZE (1u << 9)     /* the fixed codes are at most 9 and 5 bits */
#define FIXED_DIST_TABLE_SIZE (1u << 5)

#define MAX_LITLEN_CODES 286    /* zlib rejects HLIT beyond this */
#define MAX_DIST_CODES 30       /* ... and HDIST beyond this */
#define NUM_CODELEN_CODES 19

/* RFC 1951, 3.2.5. */
static const uint16_t length_base[29] = {
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
    35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
};
static const uint8_t length_extra[29] = {
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
    3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
};
static const uint16_t dist_base[30] = {
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
    257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
};
static const uint8_t dist_extra[30] = {
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
    7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
};
/* RFC 1951, 3.2.7: the order in which code-length code lengths are sent. */
static const uint8_t codelen_order[NUM_CODELEN_CODES] = {
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
};

/* ---- bit reader --------------------------------------------------------------------- */

struct bits {
    const uint8_t *in;
    size_t in_len;
    size_t pos;         /* next input byte not yet loaded into buf */
    uint64_t buf;       /* unread bits, next bit in bit 0 */
    unsigned count;     /* how many bits of buf are valid (the rest read as input or 0) */
};

static inline uint64_t
load_le64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
#else
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16)
           | ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40)
           | ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
#endif
}

/* Bring buf up to at least 56 valid bits, or to everything that is left; count stays
   below 64 so that shifting by it is defined.
   The word-at-a-time path may leave bits of in[pos] above `count`; they are the very
   bits the next refill ORs in at the same place, so they never corrupt anything. */
static inline void
bits_refill(struct bits *b)
{
    if (b->in_len - b->pos >= 8) {
        b->buf |= load_le64(b->in + b->pos) << b->count;
        b->pos += (63 - b->count) >> 3;
        b->count |= 56;
        return;
    }
    while (b->count < 56 && b->pos < b->in_len) {
        b->buf |= (uint64_t)b->in[b->pos++] << b->count;
        b->count += 8;
    }
}

/* Callers guarantee n <= count. */
static inline void
bits_drop(struct bits *b, unsigned n)
{
    b->buf >>= n;
    b->count -= n;
}

/* Read n <= 16 bits as a number; 0 if the input ends first. */
static inline int
bits_take(struct bits *b, unsigned n, unsigned *value)
{
    if (b->count < n) {
        bits_refill(b);
        if (b->count < n)
            return 0;
    }
    *value = (unsigned)(b->buf & ((1u << n) - 1));
    bits_drop(b, n);
    return 1;
}

/* Bytes fully or partly consumed so far. */
static inline size_t
bits_bytes_used(const struct bits *b)
{
    return b->pos - (b->count >> 3);
}

/* ---- Huffman tables ----------------------------------------------------------------- */

enum code_use { USE_CODELEN, USE_LITLEN, USE_DIST };

/* What a symbol means once its code is recognised. Symbols that RFC 1951 reserves
   still get an entry (they are part of the fixed code) but decode as invalid. */
static uint32_t
symbol_entry(enum code_use use, unsigned sym, unsigned code_len)
{
    switch (use) {
    case USE_CODELEN:
        return make_entry(KIND_LITERAL, code_len, 0, sym);
    case USE_LITLEN:
        if (sym < 256)
            return make_entry(KIND_LITERAL, code_len, 0, sym);
        if (sym == 256)
            return make_entry(KIND_END, code_len, 0, 0);
        if (sym - 257 < 29)
            return make_entry(KIND_BASE, code_len, length_extra[sym - 257],
                              length_base[sym - 257]);
        break;
    case USE_DIST:
        if (sym < 30)
            return make_entry(KIND_BASE, code_len, dist_extra[sym], dist_base[sym]);
        break;
    }
    return make_entry(KIND_INVALID, code_len, 0, 0);
}

/* Deflate sends Huffman codes most significant bit first, but we read LSB first. */
static inline unsigned
reverse_bits(unsigned code, unsigned n)
{
    code = ((code & 0x5555u) << 1) | ((code >> 1) & 0x5555u);
    code = ((code & 0x3333u) << 2) | ((code >> 2) & 0x3333u);
    code = ((code & 0x0f0fu) << 4) | ((code >> 4) & 0x0f0fu);
    code = ((code & 0x00ffu) << 8) | ((code >> 8) & 0x00ffu);
    return code >> (16 - n);
}

/* Check a set of code lengths the way zlib does: over-subscription is always an error;
   an incomplete set is allowed only for literal/length and distance codes whose longest
   code is one bit (a lone one-bit code, or, for distances, no code at all). */
static int
lengths_acceptable(const unsigned count[MAX_CODE_BITS + 1], enum code_use use,
                   int *incomplete, unsigned *max_len)
{
    int left = 1;       /* unused code space, in units of the current length */
    unsigned len;

    *max_len = 0;
    for (len = 1; len <= MAX_CODE_BITS; len++) {
        left = 2 * left - (int)count[len];
        if (left < 0)
            return 0;
        if (count[len])
            *max_len = len;
    }
    *incomplete = left > 0;
    if (*incomplete && (use == USE_CODELEN || *max_len > 1))
        return 0;
    return 1;
}

/* A built decoding table: entries[] indexed first by the next `root` bits. */
struct code_table {
    const uint32_t *entries;
    unsigned root;
};

/* Fill table[0..table_size) with a two-level decoding table for the canonical code
   given by lens[0..nsyms), using at most max_root bits for the primary level.
   Returns 0 if zlib would reject the lengths. */
static int
build_table(uint32_t *table, size_t table_size, unsigned max_root, const uint8_t *lens,
            unsigned nsyms, enum code_use use, struct code_table *result)
{
    /* Two counters per length halve the store-to-load chain when a run of symbols
       has the same length (usually 0), which dominates tiny dynamic blocks. */
    unsigned count[MAX_CODE_BITS + 1] = {0}, count_odd[MAX_CODE_BITS + 1] = {0};
    unsigned next_code[MAX_CODE_BITS + 1];
    /* Per primary slot: the longest code under that prefix, plus ALLOCATED once its
       subtable exists. Sized for the largest root we use. */
    uint8_t sub_bits[1u << LITLEN_ROOT];
    const uint8_t ALLOCATED = 0x80;
    unsigned root, root_size, root_mask;
    unsigned sym, len, code, max_len, used;
    int incomplete;

    if (max_root > LITLEN_ROOT)
        return 0;
    for (sym = 0; sym + 1 < nsyms; sym += 2) {
        count[lens[sym]]++;
        count_odd[lens[sym + 1]]++;
    }
    if (sym < nsyms)
        count[lens[sym]]++;
    for (len = 1; len <= MAX_CODE_BITS; len++)
        count[len] += count_odd[len];
    count[0] = 0;
    if (!lengths_acceptable(count, use, &incomplete, &max_len))
        return 0;

    /* A short code needs no more index bits than its longest code; a smaller primary
       level makes building cheap for the tiny codes a hostile stream may repeat. */
    root = max_len < max_root ? max_len : max_root;
    root_size = 1u << root;
    root_mask = root_size - 1;
    if (table_size < root_size)
        return 0;

    /* Slots no code reaches must decode as invalid. For a complete code every slot is
       overwritten below. The one-bit length lets a lookup on zero padding past the end
       be seen as truncation rather than invalid data. */
    if (incomplete) {
        uint32_t bad = make_entry(KIND_INVALID, 1, 0, 0);
        for (code = 0; code < root_size; code++)
            table[code] = bad;
    }

    /* RFC 1951, 3.2.2: the first code of each length. */
    code = 0;
    for (len = 1; len <= MAX_CODE_BITS; len++) {
        code = (code + count[len - 1]) << 1;
        next_code[len] = code;
    }

    /* Codes longer than the root share a primary slot per prefix; each such slot needs
       a subtable as deep as its longest code, so find those depths first. */
    if (max_len > root) {
        unsigned first[MAX_CODE_BITS + 1];
        memcpy(first, next_code, sizeof first);
        memset(sub_bits, 0, root_size);
        for (sym = 0; sym < nsyms; sym++) {
            len = lens[sym];
            if (len <= root)
                continue;
            code = reverse_bits(first[len]++, len) & root_mask;
            if (sub_bits[code] < len - root)
                sub_bits[code] = (uint8_t)(len - root);
        }
    }

    used = root_size;
    for (sym = 0; sym < nsyms; sym++) {
        uint32_t entry;
        unsigned rev, step, slot;

        len = lens[sym];
        if (len == 0)
            continue;
        rev = reverse_bits(next_code[len]++, len);
        entry = symbol_entry(use, sym, len);
        if (len <= root) {
            /* The bits above the code belong to whatever follows: any value matches. */
            for (slot = rev; slot < root_size; slot += 1u << len)
                table[slot] = entry;
            continue;
        }
        slot = rev & root_mask;
        if (!(sub_bits[slot] & ALLOCATED)) {
            unsigned bits = sub_bits[slot];
            if (used + (1u << bits) > table_size)
                return 0;       /* cannot happen for an acceptable code; see the sizes */
            table[slot] = make_entry(KIND_LINK, 0, bits, used);
            used += 1u << bits;
            sub_bits[slot] |= ALLOCATED;
        }
        {
            uint32_t link = table[slot];
            unsigned base = entry_value(link);
            unsigned size = 1u << entry_extra(link);
            for (step = rev >> root; step < size; step += 1u << (len - root))
                table[base + step] = entry;
        }
    }
    result->entries = table;
    result->root = root;
    return 1;
}

/* Look up the next symbol. The caller checks entry_len() against the valid bit count;
   build_table() guarantees that a link's subtable lies inside the table. */
static inline uint32_t
table_lookup(const uint32_t *table, unsigned root, uint64_t buf)
{
    uint32_t e = table[buf & ((1u << root) - 1)];
    if (entry_kind(e) == KIND_LINK)
        e = table[entry_value(e) + ((buf >> root) & ((1u << entry_extra(e)) - 1))];
    return e;
}

/* ---- decoder state ------------------------------------------------------------------ */

struct inflater {
    struct bits br;
    uint8_t *out;
    size_t out_cap;
    size_t out_pos;
    struct code_table litlen;   /* the codes of the current block */
    struct code_table dist;
    /* The fixed codes never change, so they get tables of their own, built at most
       once per call: a stream alternating tiny fixed and dynamic blocks must not cost
       a table build per block. */
    int have_fixed;
    struct code_table fixed_litlen;
    struct code_table fixed_dist;
    uint32_t dyn_litlen_entries[LITLEN_TABLE_SIZE];
    uint32_t dyn_dist_entries[DIST_TABLE_SIZE];
    uint32_t fixed_litlen_entries[FIXED_LITLEN_TABLE_SIZE];
    uint32_t fixed_dist_entries[FIXED_DIST_TABLE_SIZE];
};

static int
load_fixed_tables(struct inflater *s)
{
    uint8_t lens[288 + 32];
    unsigned i;

    if (!s->have_fixed) {
        /* RFC 1951, 3.2.6. */
        for (i = 0; i < 144; i++)
            lens[i] = 8;
        for (; i < 256; i++)
            lens[i] = 9;
        for (; i < 280; i++)
            lens[i] = 7;
        for (; i < 288; i++)
            lens[i] = 8;
        for (; i < 288 + 32; i++)
            lens[i] = 5;
        if (!build_table(s->fixed_litlen_entries, FIXED_LITLEN_TABLE_SIZE, LITLEN_ROOT, lens,
                         288, USE_LITLEN, &s->fixed_litlen)
            || !build_table(s->fixed_dist_entries, FIXED_DIST_TABLE_SIZE, DIST_ROOT,
                            lens + 288, 32, USE_DIST, &s->fixed_dist))
            return 0;
        s->have_fixed = 1;
    }
    s->litlen = s->fixed_litlen;
    s->dist = s->fixed_dist;
    return 1;
}

/* Read a code-length symbol's repeat count: `extra` more bits on top of `base`. */
static aisb_inflate_status
read_repeat(struct bits *br, unsigned base, unsigned extra, unsigned *repeat)
{
    unsigned v;
    if (!bits_take(br, extra, &v))
        return AISB_INFLATE_TRUNCATED;
    *repeat = base + v;
    return AISB_INFLATE_OK;
}

/* Decode the HLIT + HDIST code lengths of a dynamic block (RFC 1951, 3.2.7). */
static aisb_inflate_status
read_code_lengths(struct bits *br, const struct code_table *cl, uint8_t *lens, unsigned total)
{
    unsigned have = 0;

    while (have < total) {
        uint32_t e;
        unsigned sym, repeat;
        uint8_t fill;
        aisb_inflate_status st;

        bits_refill(br);
        /* Code-length codes are at most 7 bits, so the table has a single level. */
        e = cl->entries[br->buf & ((1u << cl->root) - 1)];
        if (entry_len(e) > br->count)
            return AISB_INFLATE_TRUNCATED;
        bits_drop(br, entry_len(e));
        sym = entry_value(e);
        if (sym < 16) {
            lens[have++] = (uint8_t)sym;
            continue;
        }
        if (sym == 16) {
            /* "Copy the previous length": there must be one. The repeat count is read
               first so that a stream cut short here is reported as zlib reports it. */
            st = read_repeat(br, 3, 2, &repeat);
            if (st == AISB_INFLATE_OK && have == 0)
                return AISB_INFLATE_BAD_DATA;
            fill = have ? lens[have - 1] : 0;
        } else if (sym == 17) {
            fill = 0;
            st = read_repeat(br, 3, 3, &repeat);
        } else {
            fill = 0;
            st = read_repeat(br, 11, 7, &repeat);
        }
        if (st != AISB_INFLATE_OK)
            return st;
        /* A run may cross from literal/length into distance lengths, but not past both. */
        if (repeat > total - have)
            return AISB_INFLATE_BAD_DATA;
        memset(lens + have, fill, repeat);
        have += repeat;
    }
    return AISB_INFLATE_OK;
}

/* Read a dynamic block's header and build its tables (RFC 1951, 3.2.7). */
static aisb_inflate_status
load_dynamic_tables(struct inflater *s)
{
    struct bits *br = &s->br;
    uint32_t cl_entries[CODELEN_TABLE_SIZE];
    struct code_table cl;
    uint8_t cl_lens[NUM_CODELEN_CODES] = {0};
    uint8_t lens[MAX_LITLEN_CODES + MAX_DIST_CODES];
    unsigned hlit, hdist, hclen, i, v;
    aisb_inflate_status st;

    if (!bits_take(br, 5, &hlit) || !bits_take(br, 5, &hdist) || !bits_take(br, 4, &hclen))
        return AISB_INFLATE_TRUNCATED;
    hlit += 257;
    hdist += 1;
    hclen += 4;
    if (hlit > MAX_LITLEN_CODES || hdist > MAX_DIST_CODES)
        return AISB_INFLATE_BAD_DATA;
    for (i = 0; i < hclen; i++) {
        if (!bits_take(br, 3, &v))
            return AISB_INFLATE_TRUNCATED;
        cl_lens[codelen_order[i]] = (uint8_t)v;
    }
    if (!build_table(cl_entries, CODELEN_TABLE_SIZE, CODELEN_BITS, cl_lens, NUM_CODELEN_CODES,
                     USE_CODELEN, &cl))
        return AISB_INFLATE_BAD_DATA;
    st = read_code_lengths(br, &cl, lens, hlit + hdist);
    if (st != AISB_INFLATE_OK)
        return st;
    /* Without an end-of-block code the block could never end. */
    if (lens[256] == 0)
        return AISB_INFLATE_BAD_DATA;
    if (!build_table(s->dyn_litlen_entries, LITLEN_TABLE_SIZE, LITLEN_ROOT, lens, hlit,
                     USE_LITLEN, &s->litlen)
        || !build_table(s->dyn_dist_entries, DIST_TABLE_SIZE, DIST_ROOT, lens + hlit, hdist,
                        USE_DIST, &s->dist))
        return AISB_INFLATE_BAD_DATA;
    return AISB_INFLATE_OK;
}

/* Copy a stored block straight from the input (RFC 1951, 3.2.4). */
static aisb_inflate_status
copy_stored_block(struct inflater *s)
{
    struct bits *br = &s->br;
    unsigned len, nlen;
    size_t avail_in, avail_out, n;

    bits_drop(br, br->count & 7);
    if (!bits_take(br, 16, &len) || !bits_take(br, 16, &nlen))
        return AISB_INFLATE_TRUNCATED;
    if (len != (~nlen & 0xffffu))
        return AISB_INFLATE_BAD_DATA;

    /* We are byte-aligned, so the whole bytes left in the bit buffer are exactly the
       ones just before pos: give them back and copy from the input directly. */
    br->pos -= br->count >> 3;
    br->buf = 0;
    br->count = 0;

    avail_in = br->in_len - br->pos;
    avail_out = s->out_cap - s->out_pos;
    n = len;
    if (n > avail_in)
        n = avail_in;
    if (n > avail_out)
        n = avail_out;
    if (n > 0)
        memcpy(s->out + s->out_pos, br->in + br->pos, n);
    s->out_pos += n;
    br->pos += n;
    if (n == len)
        return AISB_INFLATE_OK;
    /* Claim overflow only if there was an input byte left that did not fit; if the
       input stopped first (or at the same point), the stream is simply cut short. */
    return avail_out < avail_in ? AISB_INFLATE_TOO_BIG : AISB_INFLATE_TRUNCATED;
}

/* Copy `len` bytes from `dist` bytes back. The caller has checked dist <= *pos. */
static inline aisb_inflate_status
copy_match(uint8_t *out, size_t cap, size_t *pos, size_t dist, size_t len)
{
    size_t p = *pos;
    uint8_t *dst = out + p;
    const uint8_t *src = dst - dist;

    if (len > cap - p) {
        /* Fill up to the cap so the caller still gets a correct prefix. */
        size_t n = cap - p, i;
        for (i = 0; i < n; i++)
            dst[i] = src[i];
        *pos = cap;
        return AISB_INFLATE_TOO_BIG;
    }
    *pos = p + len;
    if (dist >= 8 && cap - p >= len + 8) {
        /* 8-byte chunks never overlap their own source when dist >= 8, and each chunk
           reads only bytes already final. Overshoot lands inside out[0..cap) and is
           overwritten by later output (or lies beyond *out_len). */
        uint8_t *end = dst + len;
        do {
            memcpy(dst, src, 8);
            dst += 8;
            src += 8;
        } while (dst < end);
    } else if (dist == 1) {
        memset(dst, dst[-1], len);
    } else {
        /* Overlapping: each byte may depend on one written a moment ago. */
        size_t i;
        for (i = 0; i < len; i++)
            dst[i] = src[i];
    }
    return AISB_INFLATE_OK;
}

/* Decode the compressed data of one fixed or dynamic block, up to its end-of-block
   code. The bit reader and output position are kept in locals so that the compiler
   can hold them in registers across the loop. */
static aisb_inflate_status
decode_huffman_block(struct inflater *s)
{
    struct bits br = s->br;
    const uint32_t *litlen = s->litlen.entries;
    const uint32_t *dist = s->dist.entries;
    const unsigned litlen_root = s->litlen.root;
    const unsigned dist_root = s->dist.root;
    uint8_t *out = s->out;
    const size_t cap = s->out_cap;
    size_t pos = s->out_pos;
    aisb_inflate_status st;

    for (;;) {
        uint32_t e;
        unsigned n, length, distance;

        bits_refill(&br);
        e = table_lookup(litlen, litlen_root, br.buf);
        n = entry_len(e);
        if (n > br.count) {
            st = AISB_INFLATE_TRUNCATED;
            break;
        }
        bits_drop(&br, n);

        if (entry_kind(e) == KIND_LITERAL) {
            if (pos == cap) {
                st = AISB_INFLATE_TOO_BIG;
                break;
            }
            out[pos++] = (uint8_t)entry_value(e);
            continue;
        }
        if (entry_kind(e) != KIND_BASE) {
            st = entry_kind(e) == KIND_END ? AISB_INFLATE_OK : AISB_INFLATE_BAD_DATA;
            break;
        }

        /* A length; the refill above left enough bits for it and a distance unless
           the input is nearly exhausted, which the checks below catch. */
        n = entry_extra(e);
        if (n > br.count) {
            st = AISB_INFLATE_TRUNCATED;
            break;
        }
        length = entry_value(e) + (unsigned)(br.buf & ((1u << n) - 1));
        bits_drop(&br, n);

        e = table_lookup(dist, dist_root, br.buf);
        n = entry_len(e);
        if (n > br.count) {
            st = AISB_INFLATE_TRUNCATED;
            break;
        }
        bits_drop(&br, n);
        if (entry_kind(e) != KIND_BASE) {
            st = AISB_INFLATE_BAD_DATA;
            break;
        }
        n = entry_extra(e);
        if (n > br.count) {
            st = AISB_INFLATE_TRUNCATED;
            break;
        }
        distance = entry_value(e) + (unsigned)(br.buf & ((1u << n) - 1));
        bits_drop(&br, n);

        /* We decode from the start of the stream, so "too far back" means before it. */
        if (distance > pos) {
            st = AISB_INFLATE_BAD_DATA;
            break;
        }
        st = copy_match(out, cap, &pos, distance, length);
        if (st != AISB_INFLATE_OK)
            break;
    }
    s->br = br;
    s->out_pos = pos;
    return st;
}

static aisb_inflate_status
inflate_blocks(struct inflater *s)
{
    for (;;) {
        unsigned final, type;
        aisb_inflate_status st;

        if (!bits_take(&s->br, 1, &final) || !bits_take(&s->br, 2, &type))
            return AISB_INFLATE_TRUNCATED;
        switch (type) {
        case 0:
            st = copy_stored_block(s);
            break;
        case 1:
            st = load_fixed_tables(s) ? AISB_INFLATE_OK : AISB_INFLATE_BAD_DATA;
            if (st == AISB_INFLATE_OK)
                st = decode_huffman_block(s);
            break;
        case 2:
            st = load_dynamic_tables(s);
            if (st == AISB_INFLATE_OK)
                st = decode_huffman_block(s);
            break;
        default:
            st = AISB_INFLATE_BAD_DATA;     /* block type 3 is reserved */
            break;
        }
        if (st != AISB_INFLATE_OK || final)
            return st;
    }
}

aisb_inflate_status
aisb_inflate(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
             size_t *out_len, size_t *in_used)
{
    struct inflater s;
    aisb_inflate_status st;

    /* Tolerate NULL buffers of length zero; treat any other NULL as no room / no data. */
    if (in == NULL)
        in_len = 0;
    if (out == NULL)
        out_cap = 0;
    s.br.in = in;
    s.br.in_len = in_len;
    s.br.pos = 0;
    s.br.buf = 0;
    s.br.count = 0;
    s.out = out;
    s.out_cap = out_cap;
    s.out_pos = 0;
    s.have_fixed = 0;

    st = inflate_blocks(&s);

    if (out_len)
        *out_len = s.out_pos;
    if (in_used)
        *in_used = bits_bytes_used(&s.br);
    return st;
}

const char *
aisb_inflate_strerror(aisb_inflate_status s)
{
    switch (s) {
    case AISB_INFLATE_OK:
        return "ok";
    case AISB_INFLATE_TRUNCATED:
        return "deflate stream is truncated";
    case AISB_INFLATE_BAD_DATA:
        return "invalid deflate stream";
    case AISB_INFLATE_TOO_BIG:
        return "decompressed data exceeds the size limit";
    }
    return "unknown inflate status";
}
