"""aisbom's own raw DEFLATE decoder (csrc/inflate.c), checked against zlib.

The decoder must accept exactly what zlib accepts (with wbits=-15) and produce the same
bytes; it must fail with ValueError where zlib fails or wants more input, and with
OverflowError exactly when the output would exceed max_out.
"""
import random
import struct
import zlib

import pytest

from aisbom._core import inflate_raw

STRATEGIES = {
    "default": zlib.Z_DEFAULT_STRATEGY,
    "filtered": zlib.Z_FILTERED,
    "huffman_only": zlib.Z_HUFFMAN_ONLY,
    "rle": zlib.Z_RLE,
    "fixed": zlib.Z_FIXED,
}
BIG = 1 << 22
# The ValueError text is aisb_inflate_strerror()'s, which tells the two failures apart.
TRUNCATED_TEXT = "truncated"
INVALID_TEXT = "invalid"


def deflate(data, level=6, strategy=zlib.Z_DEFAULT_STRATEGY, wbits=-15, memlevel=8):
    c = zlib.compressobj(level, zlib.DEFLATED, wbits, memlevel, strategy)
    return c.compress(data) + c.flush()


def zlib_verdict(data, max_out):
    """What zlib makes of `data`: ("ok", output), ("too_big", None), ("bad", None) or
    ("truncated", None)."""
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(data, max_out + 1)
    except zlib.error:
        return "bad", None
    if len(out) > max_out:
        return "too_big", None
    if d.eof:
        return "ok", out
    return "truncated", None


def assert_like_zlib(data, max_out=BIG, exact_kind=False):
    """With exact_kind, a truncated stream must also be reported as truncated and an
    invalid one as invalid, not as too big. (Off for random damage: a dynamic header with
    an empty code-length code is invalid to us at once, but merely truncated to zlib if
    the input stops before it has read the lengths that code cannot produce; and a
    stream that overflows max_out before its damage may say so instead.)"""
    verdict, expected = zlib_verdict(data, max_out)
    if verdict == "ok":
        assert inflate_raw(data, max_out) == expected
    elif verdict == "too_big":
        with pytest.raises(OverflowError):
            inflate_raw(data, max_out)
    elif verdict == "truncated":
        with pytest.raises(ValueError, match=TRUNCATED_TEXT if exact_kind else None):
            inflate_raw(data, max_out)
    elif exact_kind:
        with pytest.raises(ValueError, match=INVALID_TEXT):
            inflate_raw(data, max_out)
    else:
        # A stream that overflows max_out before its damage may say so instead.
        with pytest.raises((ValueError, OverflowError)):
            inflate_raw(data, max_out)
    return verdict


def sample_data(rng):
    words = b"tensor weight bias layer model torch storage float32 pickle the of and".split()
    text = b" ".join(rng.choice(words) for _ in range(3000))
    floats = struct.pack("<2000f", *(rng.gauss(0, 1) for _ in range(2000)))
    runs = b"".join(bytes([rng.randrange(256)]) * rng.randint(1, 300) for _ in range(60))
    far = bytearray(rng.randbytes(33000))
    for _ in range(200):  # repeats from up to 32 KiB back
        d = rng.randint(1, 32768)
        for _ in range(rng.randint(3, 258)):
            far.append(far[-d])
    return {
        "empty": b"",
        "one": b"x",
        "text": text,
        "floats": floats,
        "random": rng.randbytes(5000),
        "zeros": bytes(70000),
        "runs": runs,
        "far": bytes(far),
    }


SAMPLES = sample_data(random.Random(1951))


# ---- round trips ----------------------------------------------------------------------

@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("level", range(10))
def test_round_trip_levels_and_strategies(level, strategy):
    for name, data in SAMPLES.items():
        stream = deflate(data, level, STRATEGIES[strategy])
        assert inflate_raw(stream, len(data)) == data, name


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 8, 9, 255, 256, 257, 258, 259, 32767,
                                  32768, 32769, 65535, 65536, 65537, 200000])
def test_round_trip_sizes(size):
    rng = random.Random(size)
    data = rng.randbytes(size).translate(bytes(65 + i % 4 for i in range(256)))
    for level in (0, 1, 9):
        assert inflate_raw(deflate(data, level), size) == data


@pytest.mark.parametrize("wbits", range(9, 16))
@pytest.mark.parametrize("memlevel", [1, 9])
def test_round_trip_window_and_memory_sizes(wbits, memlevel):
    data = SAMPLES["far"]
    assert inflate_raw(deflate(data, 6, wbits=-wbits, memlevel=memlevel), len(data)) == data


@pytest.mark.parametrize("mode", ["Z_SYNC_FLUSH", "Z_FULL_FLUSH", "Z_PARTIAL_FLUSH", "Z_BLOCK"])
def test_round_trip_with_flushes(mode):
    # Flushes add empty stored or fixed blocks and byte alignment in mid-stream.
    data = SAMPLES["text"]
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    parts = []
    for i in range(0, len(data), 1000):
        parts.append(c.compress(data[i:i + 1000]))
        parts.append(c.flush(getattr(zlib, mode)))
    parts.append(c.flush(getattr(zlib, mode)))
    parts.append(c.flush())
    assert inflate_raw(b"".join(parts), len(data)) == data


def test_empty_input_is_truncated():
    with pytest.raises(ValueError, match=TRUNCATED_TEXT):
        inflate_raw(b"", 100)


def test_empty_blocks():
    assert inflate_raw(b"\x03\x00", 0) == b""            # empty final fixed block
    assert inflate_raw(b"\x01\x00\x00\xff\xff", 0) == b""  # empty final stored block


# ---- output caps ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["text", "zeros", "random", "runs", "one"])
def test_cap_is_exact(name):
    data = SAMPLES[name]
    n = len(data)
    for strategy in STRATEGIES.values():
        stream = deflate(data, 6, strategy)
        for cap in sorted({0, 1, n // 2} | set(range(max(0, n - 20), n + 3))):
            if cap < n:
                with pytest.raises(OverflowError):
                    inflate_raw(stream, cap)
            else:
                assert inflate_raw(stream, cap) == data


def test_cap_on_a_bomb():
    stream = deflate(bytes(10_000_000), 9)
    assert len(stream) < 20000
    with pytest.raises(OverflowError):
        inflate_raw(stream, 1_000_000)


# ---- truncation and corruption ----------------------------------------------------------

def small_streams():
    rng = random.Random(7)
    out = []
    for i, strategy in enumerate(STRATEGIES.values()):
        for data in (SAMPLES["text"][:600], rng.randbytes(150), SAMPLES["runs"][:500]):
            out.append(deflate(data, (3 * i) % 10, strategy))
    out.append(deflate(SAMPLES["text"][:300], 0))  # stored
    return out


def test_every_truncation_fails():
    for stream in small_streams():
        for cut in range(len(stream)):
            assert zlib_verdict(stream[:cut], BIG)[0] == "truncated"
            with pytest.raises(ValueError, match=TRUNCATED_TEXT):
                inflate_raw(stream[:cut], BIG)


def test_random_corruption_agrees_with_zlib():
    rng = random.Random(1234)
    streams = small_streams() + [deflate(SAMPLES["floats"][:3000], 6, s)
                                 for s in STRATEGIES.values()]
    verdicts = set()
    for _ in range(3000):
        m = bytearray(rng.choice(streams))
        for _ in range(rng.choice([1, 1, 2, 4])):
            i = rng.randrange(len(m))
            if rng.random() < 0.5:
                m[i] ^= 1 << rng.randrange(8)
            else:
                m[i] = rng.randrange(256)
        if rng.random() < 0.2:
            del m[rng.randrange(len(m)):]
        verdicts.add(assert_like_zlib(bytes(m), rng.choice([BIG, 100, 1000])))
    assert {"ok", "bad", "truncated"} <= verdicts


def test_every_single_bit_flip_agrees_with_zlib():
    stream = deflate(SAMPLES["text"][:200], 9)
    for i in range(len(stream) * 8):
        m = bytearray(stream)
        m[i // 8] ^= 1 << (i % 8)
        assert_like_zlib(bytes(m), 1000)


# ---- hand-built streams for the corners of RFC 1951 and of zlib's acceptance ------------

LEN_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83,
            99, 115, 131, 163, 195, 227, 258]
LEN_EXTRA = [0] * 8 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [0]
DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769,
             1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11,
              12, 12, 13, 13]
CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
FIXED_LIT = [8] * 144 + [9] * 112 + [7] * 24 + [8] * 8
FIXED_DIST = [5] * 32


class Bits:
    """LSB-first bit writer; Huffman codes go out most significant bit first."""

    def __init__(self):
        self.value = 0
        self.n = 0

    def put(self, v, n):
        self.value |= v << self.n
        self.n += n

    def code(self, codes, sym):
        c, length = codes[sym]
        self.put(int(format(c, f"0{length}b")[::-1], 2), length)

    def align(self):
        self.n += -self.n % 8

    def bytes(self, pad=0):
        return self.value.to_bytes((self.n + 7) // 8, "little") + bytes(pad)


def canonical(lens):
    count = [0] * 17
    for n in lens:
        count[n] += 1
    count[0] = 0
    code, first = 0, [0] * 17
    for n in range(1, 17):
        code = (code + count[n - 1]) << 1
        first[n] = code
    codes = {}
    for sym, n in enumerate(lens):
        if n:
            codes[sym] = (first[n], n)
            first[n] += 1
    return codes


def put_items(b, items, lit, dist):
    """items: ints (literals), ("copy", length, distance), ("sym", s), ("dsym", d),
    ("bits", value, n) for raw bits, "end"."""
    for it in items:
        if it == "end":
            b.code(lit, 256)
        elif isinstance(it, tuple) and it[0] == "bits":
            b.put(it[1], it[2])
        elif isinstance(it, int):
            b.code(lit, it)
        elif it[0] == "sym":
            b.code(lit, it[1])
        elif it[0] == "dsym":
            b.code(dist, it[1])
        elif it[0] == "copy258via284":
            b.code(lit, 284)
            b.put(31, 5)
            put_dist(b, it[1], dist)
        else:
            _, length, distance = it
            i = 28 if length == 258 else max(i for i in range(28) if LEN_BASE[i] <= length)
            b.code(lit, 257 + i)
            b.put(length - LEN_BASE[i], LEN_EXTRA[i])
            put_dist(b, distance, dist)


def put_dist(b, distance, dist):
    d = max(i for i in range(30) if DIST_BASE[i] <= distance)
    b.code(dist, d)
    b.put(distance - DIST_BASE[d], DIST_EXTRA[d])


def fixed_block(b, items, final=True):
    b.put(int(final), 1)
    b.put(1, 2)
    put_items(b, items, canonical(FIXED_LIT), canonical(FIXED_DIST))


def stored_block(b, data, final=True, nlen=None):
    b.put(int(final), 1)
    b.put(0, 2)
    b.align()
    b.put(len(data), 16)
    b.put(~len(data) & 0xFFFF if nlen is None else nlen, 16)
    for byte in data:
        b.put(byte, 8)


def dynamic_block(b, lit_lens, dist_lens, items, cl_items=None, final=True):
    """cl_items: (code-length symbol, extra bits) pairs; by default every length is sent
    as itself, with a complete code-length code over the symbols used."""
    if cl_items is None:
        cl_items = [(n, 0) for n in list(lit_lens) + list(dist_lens)]
    used = sorted({s for s, _ in cl_items} | {0, 1})
    depth = (len(used) - 1).bit_length()
    short = (1 << depth) - len(used)
    cl_lens = [0] * 19
    for i, s in enumerate(used):
        cl_lens[s] = depth - 1 if i < short else depth
    b.put(int(final), 1)
    b.put(2, 2)
    b.put(len(lit_lens) - 257, 5)
    b.put(len(dist_lens) - 1, 5)
    b.put(15, 4)
    for s in CL_ORDER:
        b.put(cl_lens[s], 3)
    cl_codes = canonical(cl_lens)
    for s, extra in cl_items:
        b.code(cl_codes, s)
        b.put(extra, {16: 2, 17: 3, 18: 7}.get(s, 0))
    put_items(b, items, canonical(lit_lens), canonical(dist_lens))


def lit_lens(*syms, n=257):
    """A complete literal/length code over `syms` (plus end-of-block)."""
    syms = sorted(set(syms) | {256})
    lens = [0] * max(n, syms[-1] + 1)
    depth = (len(syms) - 1).bit_length()
    short = (1 << depth) - len(syms)
    for i, s in enumerate(syms):
        lens[s] = depth - 1 if i < short else depth
    return lens


def dyn(lits, dists, items, **kw):
    b = Bits()
    dynamic_block(b, lits, dists, items, **kw)
    return b.bytes(pad=8)


def fixed(items):
    b = Bits()
    fixed_block(b, items)
    return b.bytes(pad=8)


def one_code(n, sym, length=1):
    lens = [0] * n
    lens[sym] = length
    return lens


ZEROS_TO_256 = [(18, 127), (18, 107)]  # 138 + 118 zero lengths

CRAFTED = [
    # Distance codes: zlib accepts one code of one bit, and an unused empty code.
    ("single one-bit distance code",
     dyn(lit_lens(97, 257), [1], [97, ("copy", 3, 1), "end"]), "ok"),
    ("single distance code, symbol 5",
     dyn(lit_lens(97, 257), one_code(6, 5), [97] * 8 + [("copy", 3, 7), "end"]), "ok"),
    ("single two-bit distance code", dyn(lit_lens(97), [2], [97, "end"]), "bad"),
    ("incomplete distance code", dyn(lit_lens(97), [1, 2], [97, "end"]), "bad"),
    ("over-subscribed distance code", dyn(lit_lens(97), [1, 1, 1], [97, "end"]), "bad"),
    ("empty distance code, unused", dyn(lit_lens(97), [0], [97, "end"]), "ok"),
    ("empty distance code, used",
     dyn(lit_lens(97, 257), [0], [97, ("sym", 257)]), "bad"),
    ("unused half of a one-bit distance code",
     dyn(lit_lens(97, 257), [1], [97, ("sym", 257), ("bits", 1, 1)]), "bad"),
    ("unused half of the end-of-block-only code",
     dyn(one_code(257, 256), [0], [("bits", 1, 1)]), "bad"),
    # Literal/length codes: one-bit end-of-block alone is accepted, other gaps are not.
    ("end-of-block-only one-bit code", dyn(one_code(257, 256), [0], ["end"]), "ok"),
    ("end-of-block-only two-bit code", dyn(one_code(257, 256, 2), [0], ["end"]), "bad"),
    ("incomplete literal/length code",
     dyn([2 if s in (97, 98, 256) else 0 for s in range(257)], [1], [97, "end"]), "bad"),
    ("over-subscribed literal/length code",
     dyn([1 if s in (97, 98, 256) else 0 for s in range(257)], [1], [97, "end"]), "bad"),
    ("no end-of-block code", dyn(one_code(257, 97), [1], [97]), "bad"),
    # Code-length sequences.
    # (Were the repeat taken as three zeros, this stream would be valid.)
    ("repeat with no previous length",
     dyn(lit_lens(97), [1], [97, "end"],
         cl_items=[(16, 0)] + [(n, 0) for n in lit_lens(97)[3:] + [1]]), "bad"),
    ("repeat of a previous length",
     dyn(lit_lens(97), [1], [97, "end"],
         cl_items=[(0, 0)] + [(16, 0)] + [(n, 0) for n in lit_lens(97)[4:] + [1]]), "ok"),
    ("repeat crossing into distance lengths",
     dyn(one_code(258, 256)[:257] + [1], [1, 1], ["end"],
         cl_items=ZEROS_TO_256 + [(1, 0), (16, 0)]), "ok"),
    ("repeat past HLIT+HDIST",
     dyn(one_code(258, 256)[:257] + [1], [1, 1], ["end"],
         cl_items=ZEROS_TO_256 + [(1, 0), (16, 1)]), "bad"),
    ("zero run past HLIT+HDIST",
     dyn(one_code(258, 256)[:257] + [1], [1, 1], ["end"],
         cl_items=ZEROS_TO_256 + [(1, 0), (1, 0), (1, 0), (17, 7)]), "bad"),
    # Header counts: zlib refuses more than 286 literal/length or 30 distance codes.
    ("HLIT 286, HDIST 30", dyn(lit_lens(97, n=286), [1] * 2 + [0] * 28, [97, "end"]), "ok"),
    ("HLIT 287", dyn(lit_lens(97, n=287), [1, 1], [97, "end"]), "bad"),
    ("HLIT 288", dyn(lit_lens(97, n=288), [1, 1], [97, "end"]), "bad"),
    ("HDIST 31", dyn(lit_lens(97), [1, 1] + [0] * 29, [97, "end"]), "bad"),
    ("HDIST 32", dyn(lit_lens(97), [1, 1] + [0] * 30, [97, "end"]), "bad"),
    # Reserved symbols of the fixed code.
    ("fixed literal/length 286", fixed([1, ("sym", 286)]), "bad"),
    ("fixed literal/length 287", fixed([1, ("sym", 287)]), "bad"),
    ("fixed distance 30", fixed([1, ("sym", 257), ("dsym", 30)]), "bad"),
    ("fixed distance 31", fixed([1, ("sym", 257), ("dsym", 31)]), "bad"),
    # Lengths and distances.
    ("length 258 via 285", fixed([7, ("copy", 258, 1), "end"]), "ok"),
    ("length 258 via 284 + 31", fixed([7, ("copy258via284", 1), "end"]), "ok"),
    ("distance back to the start", fixed([1, 2, 3, ("copy", 10, 3), "end"]), "ok"),
    ("distance too far back", fixed([1, 2, 3, ("copy", 10, 4), "end"]), "bad"),
    ("distance 32768",
     fixed([0] + [("copy", 258, 1)] * 127 + [9, ("copy", 3, 32768), "end"]), "ok"),
    ("distance 32768, one byte short",
     fixed([0] + [("copy", 258, 1)] * 127 + [("copy", 3, 32768), "end"]), "bad"),
]


def _fifteen_bit_codes():
    # Lengths 1..14, 15, 15 form a complete code: the longest codes need second-level
    # tables in any table-driven decoder.
    depths = list(range(1, 15)) + [15, 15]
    lits = [0] * 286
    for s, n in zip([256, 97, 98, 99, 257, 100, 101, 102, 258, 103, 104, 105, 106, 285, 107,
                     108], depths):
        lits[s] = n
    dists = [0] * 30
    for s, n in zip([1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 6], depths):
        dists[s] = n
    items = list(b"abcdefghijkl") + [("copy", 3, 1), ("copy", 258, 2), ("copy", 4, 11),
                                     ("copy", 3, 12), "end"]
    return dyn(lits, dists, items)


def _stored(nlen):
    b = Bits()
    stored_block(b, b"hello", nlen=nlen)
    return b.bytes()


def _reserved_type():
    b = Bits()
    fixed_block(b, [5, "end"], final=False)
    b.put(1, 1)
    b.put(3, 2)
    return b.bytes(pad=4)


def _many_blocks():
    b = Bits()
    for i in range(40):
        stored_block(b, b"", final=False)
        stored_block(b, bytes([i]) * i, final=False)
        fixed_block(b, [i, "end"], final=False)
        dynamic_block(b, lit_lens(i), [0], [i, i, "end"], final=False)
    stored_block(b, b"end")
    return b.bytes()


CRAFTED += [
    ("stored block with bad NLEN", _stored(0xFFFF), "bad"),
    ("stored block", _stored(None), "ok"),
    ("reserved block type", _reserved_type(), "bad"),
    ("mixed chain of blocks", _many_blocks(), "ok"),
    ("fifteen-bit codes", _fifteen_bit_codes(), "ok"),
]


@pytest.mark.parametrize("name,stream,expect", CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_stream(name, stream, expect):
    # zlib's verdict is asserted as well, so a wrong hand-built stream cannot pass silently.
    assert zlib_verdict(stream, BIG)[0] == expect
    assert assert_like_zlib(stream, exact_kind=True) == expect
    for cut in range(len(stream)):
        assert_like_zlib(stream[:cut], exact_kind=True)
