/* inflate.h: a raw DEFLATE (RFC 1951) decoder for untrusted model files.
 *
 * We carry our own decoder rather than linking zlib so that builds do not depend on
 * zlib headers being installed, and so that the output cap is enforced by the decoder
 * itself: a few kilobytes of hostile input must not be able to demand gigabytes.
 *
 * The decoder accepts exactly the streams zlib accepts (see inflate.c for the corner
 * cases), so what we scan is what a zlib-based loader would load.
 */
#ifndef AISBOM_INFLATE_H
#define AISBOM_INFLATE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    AISB_INFLATE_OK = 0,        /* a complete deflate stream (final block seen) was decoded */
    AISB_INFLATE_TRUNCATED,     /* input ended before the final block finished */
    AISB_INFLATE_BAD_DATA,      /* invalid stream: bad block type, bad code lengths, distance too far back, stored length mismatch, ... */
    AISB_INFLATE_TOO_BIG,       /* output would exceed out_cap */
} aisb_inflate_status;

/* Decode one raw deflate stream from in[0..in_len) into out[0..out_cap).
   *out_len receives the number of bytes written, *in_used the number of input bytes consumed
   (rounded up to a whole byte after the final block). Never reads in[] or writes out[] out of bounds,
   never allocates, no recursion, no global state, thread-safe, linear time in in_len + out_len.

   On every status *out_len and *in_used are set (either may be NULL if not wanted).
   On AISB_INFLATE_TOO_BIG, out[0..out_cap) holds the first out_cap bytes of the output.
   Bytes of out[] beyond *out_len (but below out_cap) may have been overwritten. */
aisb_inflate_status aisb_inflate(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                                 size_t *out_len, size_t *in_used);

/* Human-readable text for a status. */
const char *aisb_inflate_strerror(aisb_inflate_status s);

#endif /* AISBOM_INFLATE_H */
