/* libFuzzer target: the raw DEFLATE decoder with a small output cap. */
#include <stdlib.h>

#include "inflate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[1 << 16];
    size_t got, used;
    size_t cap = size ? data[0] * 256u : 0;  /* vary the cap with the input */
    if (cap > sizeof out)
        cap = sizeof out;
    aisb_inflate(data, size, out, cap, &got, &used);
    return 0;
}
