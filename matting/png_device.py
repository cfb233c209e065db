"""PNG files encoded where the pixels are: on the GPU, for a batch's full-resolution outputs (issue 17).

fpng takes 6-13 ms of a CPU core per 1 MP RGBA image (61 ms at 8 MP on the H200 host), so at 500 images/s the
encoders alone would need several of the host's 16 cores, and each image's 4 MB of pixels has to come down from
the GPU and cross to an encoder process. Here the GPU filters the rows, finds the runs, counts the symbols, packs
the Huffman codes and sums the Adler-32; the host builds one Huffman code per stack from the counts and writes the
PNG chunks (CRC by zlib). Only the compressed bytes come down.

The stream is valid PNG that any reader decodes to exactly the same pixels (PNG is lossless): per row the filter
with the smallest sum of absolute signed bytes (libpng's own heuristic), then one deflate block with a dynamic
Huffman code: literals, and runs of one byte value as copies of the byte before (distance 1), found in one pass
where general LZ77 matching is sequential work. The files are 16-29 % smaller than fpng's on camera photos.

Measured on the H200 (docs/BENCHMARKS.md, session 22, before its types were narrowed): 3.05 ms per 1 MP image in
stacks of 8 against fpng's 7.02 on one core, 24 against 61 ms at 8 MP; but those milliseconds are GPU time taken
from the batch's renders, and a batch of two engines made 266 images/s with it against 443 with fpng. So it is
opt-in (MATTING_PNG_ENCODER=device, batch_runtime.png_on_device) until its GPU time is well under a millisecond per
image.
"""

from __future__ import annotations

import heapq
import itertools
import struct
import zlib

import numpy as np
import torch

_MAX_BITS = 15              # deflate's longest Huffman code
_EOB = 256                  # deflate's end-of-block symbol
_ADLER_MOD = 65521
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}          # channels -> PNG colour type: grey, grey+alpha, RGB, RGBA
# The code-length code: every length 0-15 gets a 4-bit code (complete: 16 x 2^-4 = 1), so the block header needs no
# code of its own per image. Its lengths are sent in this fixed order (RFC 1951, 3.2.7).
_CL_ORDER = (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15)
_CL_LENGTH = 4


def encode_png_stack(images: torch.Tensor, step=None) -> list[bytes]:
    """PNG bytes of each image of a (B, H, W) or (B, H, W, C) uint8 stack (C 1-4), on the stack's own device.
    ``step``: called as ``step(name, function, *args)`` for each of the steps, giving the function's result (the
    bench times them one by one: matting/bench/png.py); by default the function is just called."""
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 pixels, got {images.dtype}")
    if images.dim() == 3:
        images = images.unsqueeze(-1)
    if images.dim() != 4 or images.shape[-1] not in _COLOUR_TYPES:
        raise ValueError(f"expected (B, H, W) or (B, H, W, C) with C in 1-4, got {tuple(images.shape)}")
    batch, height, width, channels = images.shape
    if batch == 0:
        return []
    if height == 0 or width == 0:
        raise ValueError("an image has no pixels")
    # Each step drops what it no longer needs as it goes (``del``): a stack's temporaries are tens of times its
    # pixels, and on a GPU they are the memory a second engine would use.
    step = step or _call
    data = step("filter rows", _filter_rows, images.reshape(batch, height, width * channels), channels)
    data = data.reshape(batch, -1)
    tokens = step("tokens (runs)", _tokens, data)
    counts, adler = step("counts and Adler-32 (to the host)", _counts_and_adler, data, tokens)   # the code's input
    del data
    table = step("Huffman code (host)", _stack_table, counts)
    streams = step("pack (to the host)", _pack, tokens, table, counts)
    header = _ihdr(width, height, channels)
    return [_png(header, stream, a) for stream, a in zip(streams, adler)]


def _call(name: str, function, *args):
    return function(*args)


def _stack_table(counts: np.ndarray) -> _HuffmanTable:
    """One code for the stack (its images are one kind of output, of one size): the host's share of the work is
    then one small table per call, not per image (3 ms per table in Python before it was vectorised)."""
    weights = counts.sum(0)
    weights[_EOB] = 1
    return _HuffmanTable(weights)


# ---------------------------------------------------------------------------------------------- on the device
def _filter_rows(x: torch.Tensor, bpp: int) -> torch.Tensor:
    """Each row with the PNG filter (0-4) that gives the smallest sum of |signed byte|, its type byte first. In
    bytes: PNG's filters are arithmetic modulo 256, which uint8 does by itself (and moves a quarter of int64's)."""
    left = torch.nn.functional.pad(x, (bpp, 0))[..., :-bpp]
    up = torch.nn.functional.pad(x, (0, 0, 1, 0))[:, :-1]
    up_left = torch.nn.functional.pad(up, (bpp, 0))[..., :-bpp]
    best = best_cost = best_type = None
    for kind in range(5):
        filtered = x - _predict(kind, left, up, up_left)
        cost = torch.minimum(filtered, filtered.neg()).sum(-1, dtype=torch.int32)   # -v is 256 - v: |signed|
        if best is None:
            best, best_cost, best_type = filtered, cost, torch.zeros_like(cost)
            continue
        better = cost < best_cost          # ties keep the lower filter type, as libpng does
        best = torch.where(better.unsqueeze(-1), filtered, best)
        best_cost = torch.where(better, cost, best_cost)
        best_type = torch.where(better, kind, best_type)
        del filtered, cost, better
    del left, up, up_left
    return torch.cat([best_type.unsqueeze(-1).to(torch.uint8), best], dim=-1)


def _predict(kind: int, left: torch.Tensor, up: torch.Tensor, up_left: torch.Tensor):
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:                                  # floor((a + b) / 2) without a ninth bit
        return (left >> 1) + (up >> 1) + (left & up & 1)
    a, b, c = left.to(torch.int16), up.to(torch.int16), up_left.to(torch.int16)
    pa, pb, pc = (b - c).abs(), (a - c).abs(), (a + b - 2 * c).abs()   # Paeth: the neighbour nearest a + b - c
    return torch.where((pa <= pb) & (pa <= pc), left, torch.where(pb <= pc, up, up_left))


class _Tokens:
    """Deflate's tokens, one slot per byte of the filtered data (B, n): a literal (the byte), the start of a run
    copied from the byte before (distance 1: a length symbol 257-285 and its extra bits), or nothing (a byte inside
    such a run). Runs of one byte value are the only matches: flat areas, a matte's 0s and 255s, cost a few bits
    per 258 bytes, and finding them is one pass, where general LZ77 matching is sequential work."""

    def __init__(self, symbol: torch.Tensor, extra: torch.Tensor, extra_bits: torch.Tensor):
        self.symbol, self.extra, self.extra_bits = symbol, extra, extra_bits   # symbol _NONE: no token here


_NONE = 286
_SCATTER_CHUNK = 1 << 23    # tokens packed per scatter: an 8 MP RGBA image's 33 M in four
_MAX_RUN = 258
_MIN_RUN = 8   # shorter runs cost less as literals (measured on camera photos and mattes: docs/BENCHMARKS.md)


def _length_codes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each match length 0-258: its symbol (257-285), the number of extra bits and their value (RFC 1951)."""
    symbol = np.zeros(_MAX_RUN + 1, np.int64)
    bits = np.zeros(_MAX_RUN + 1, np.int64)
    value = np.zeros(_MAX_RUN + 1, np.int64)
    length, code = 3, 257
    for extra in (0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5):
        for offset in range(1 << extra):
            if length + offset < _MAX_RUN:
                symbol[length + offset], bits[length + offset], value[length + offset] = code, extra, offset
        length += 1 << extra
        code += 1
    symbol[_MAX_RUN], bits[_MAX_RUN], value[_MAX_RUN] = 285, 0, 0
    return symbol, bits, value


_LENGTH_SYMBOL, _LENGTH_EXTRA_BITS, _LENGTH_EXTRA = _length_codes()
# Bits a symbol's token carries besides its code: a length's extra bits and the one-bit distance code after them.
_SYMBOL_EXTRA_BITS = np.zeros(_NONE, np.int64)
_SYMBOL_EXTRA_BITS[_LENGTH_SYMBOL[3:]] = _LENGTH_EXTRA_BITS[3:] + 1


def _tokens(data: torch.Tensor) -> _Tokens:
    batch, n = data.shape
    device = data.device
    flat = data.reshape(-1)
    # 32-bit positions while a stack has fewer than 2^31 bytes (8 MP RGBA stacks have 2^25): half the memory
    wide = torch.int64 if flat.numel() >= 2**31 else torch.int32
    index = torch.arange(flat.numel(), device=device, dtype=wide)
    starts = torch.ones_like(flat, dtype=torch.bool)
    starts[1:] = flat[1:] != flat[:-1]
    starts.view(batch, n)[:, 0] = True                      # a run never crosses into the next image
    # Each run's first position, by run number, from one device-wide scan over the whole stack (a 1-D cumsum is
    # CUB's scan; the first form's cummax and per-row cumsums, scans PyTorch runs in one thread block per row,
    # took 27 ms per 1 MP image on the H200, this form 3-5).
    run_id = torch.cumsum(starts, 0, dtype=wide) - 1
    # each run's first position, then the end of the stack (a wait for the count, as bincount's after it)
    first = torch.cat([torch.nonzero(starts).squeeze(1), index.new_full((1,), flat.numel())]).to(wide)
    run_start = first.index_select(0, run_id)
    run_end = first.index_select(0, run_id + 1) - 1         # the next run's first, or the end of the stack
    del starts, run_id, first
    at = index - run_start                                  # this byte's place in its run
    rest = run_end - run_start                              # bytes of the run after its first
    del index, run_start, run_end
    whole, left = rest // _MAX_RUN, rest % _MAX_RUN
    del rest
    piece = (at - 1).clamp(min=0) // _MAX_RUN              # which match of the run this byte belongs to
    first_of_piece = (at >= 1) & ((at - 1) % _MAX_RUN == 0)
    match = first_of_piece & ((piece < whole) | ((piece == whole) & (left >= _MIN_RUN)))
    literal = (at == 0) | ((piece >= whole) & (left < _MIN_RUN) & (at >= 1))
    del first_of_piece, at
    length = torch.where(match, torch.where(piece < whole, _MAX_RUN, left), 0)
    del piece, whole, left
    # 32-bit symbols (an index for the code tables), 8-bit extras: the narrowest types the steps after can use
    symbol_of, bits_of, extra_of = (torch.as_tensor(t, device=device, dtype=dtype) for t, dtype in (
        (_LENGTH_SYMBOL, torch.int32), (_LENGTH_EXTRA_BITS, torch.int8), (_LENGTH_EXTRA, torch.int8)))
    symbol = torch.where(literal, flat.to(torch.int32),
                         torch.where(match, symbol_of.index_select(0, length), _NONE).to(torch.int32))
    extra_bits = torch.where(match, bits_of.index_select(0, length), 0).to(torch.int8)
    extra = torch.where(match, extra_of.index_select(0, length), 0).to(torch.int8)
    return _Tokens(*(t.view(batch, n) for t in (symbol, extra, extra_bits)))


def _counts_and_adler(data: torch.Tensor, tokens: _Tokens) -> tuple[np.ndarray, list[int]]:
    """Each image's count of every literal/length symbol (B, 286) and the Adler-32 of its filtered bytes."""
    batch, n = data.shape
    bins = _NONE + 1
    offsets = torch.arange(batch, device=data.device, dtype=torch.int32).unsqueeze(1) * bins
    counts = torch.bincount((tokens.symbol + offsets).reshape(-1), minlength=batch * bins).reshape(batch, bins)
    # Adler-32: s1 = 1 + sum(x), s2 = n + sum((n - i) * x_i), both mod 65521; the weights are reduced first so
    # that each product fits in 32 bits and the sums in 64.
    weights = ((n - torch.arange(n, device=data.device)) % _ADLER_MOD).to(torch.int32)
    s1 = data.sum(1, dtype=torch.int64)
    s2 = (data.to(torch.int32) * weights).sum(1, dtype=torch.int64)
    host = torch.cat([counts[:, :_NONE], s1.unsqueeze(1), s2.unsqueeze(1)], dim=1).cpu().numpy()
    adler = [(((n + int(b)) % _ADLER_MOD) << 16) | ((1 + int(a)) % _ADLER_MOD) for a, b in host[:, _NONE:]]
    return host[:, :_NONE], adler


def _pack(tokens: _Tokens, table: _HuffmanTable, counts: np.ndarray) -> list[bytes]:
    """Each image's zlib stream without its Adler-32: the zlib header, the block header, the tokens and the end
    of block, bit-packed on the device. Each image starts at a 32-bit word of its own."""
    device = tokens.symbol.device
    batch = tokens.symbol.shape[0]
    lengths = torch.as_tensor(np.append(table.lengths, 0), device=device, dtype=torch.int32)   # _NONE: no bits
    codes = torch.as_tensor(np.append(table.codes, 0), device=device, dtype=torch.int32)
    symbols = tokens.symbol.reshape(-1)
    code_bits = lengths.index_select(0, symbols).view(tokens.symbol.shape)
    # A match: its length code, its extra bits, then the one-bit distance code (0: distance 1).
    bits = code_bits + tokens.extra_bits + ((tokens.symbol > _EOB) & (tokens.symbol < _NONE))
    values = codes.index_select(0, symbols).view(tokens.symbol.shape) | (tokens.extra << code_bits)
    del code_bits, symbols
    tokens.symbol = tokens.extra = tokens.extra_bits = None     # used up: freed although the caller holds them
    data_bits = counts @ (table.lengths + _SYMBOL_EXTRA_BITS)                  # (B,): tokens only
    sizes = _HEADER_BITS + data_bits + int(table.lengths[_EOB])
    words = (sizes + 31) // 32
    first_word = np.concatenate([[0], np.cumsum(words)[:-1]]).astype(np.int64)
    # Bit positions in 32 bits while the stack's stream is shorter than 2^31 bits (a stack of eight 1 MP cutouts
    # is about 2^27)
    wide = torch.int32 if int(words.sum()) * 32 < 2**31 else torch.int64
    start = torch.as_tensor(first_word * 32 + _HEADER_BITS, device=device, dtype=wide)
    # Where each token starts: one scan over the whole stack (see _tokens), less the bits of the images before.
    ends = torch.cumsum(bits.reshape(-1), 0, dtype=wide).view(bits.shape)
    before_image = torch.cat([ends.new_zeros(1), ends[:-1, -1]])
    positions = ends - bits - before_image.unsqueeze(1) + start.unsqueeze(1)
    del ends
    # The headers and the end-of-block codes are known here: a few hundred short pieces per image.
    extra_pos = np.concatenate([(first_word * 32)[:, None] + table.header_positions[None, :],
                                (first_word * 32 + _HEADER_BITS + data_bits)[:, None]], axis=1)
    extra_val = np.tile(np.append(table.header_values, table.codes[_EOB]), (batch, 1))
    # Only the slots that hold a token: the empty ones inside a long run all point at the same word, and adding
    # their zeros there one after another would serialise the GPU's atomics (one more wait, for the count).
    tokens_at = torch.nonzero(bits.reshape(-1)).squeeze(1)
    del bits
    packed = torch.zeros(int(words.sum()) + 1, dtype=torch.int64, device=device)
    positions, values = positions.reshape(-1), values.reshape(-1)
    extra = (torch.as_tensor(extra_pos.reshape(-1), device=device),
             torch.as_tensor(extra_val.reshape(-1), device=device))
    pieces = ((positions[at], values[at]) for at in tokens_at.split(_SCATTER_CHUNK))  # bounded temporaries
    for pos, val in itertools.chain(pieces, [extra]):
        # Tokens never overlap, so adding their bits into the words is OR-ing them. A token of at most 21 bits
        # shifted within a 32-bit word spills at most into the next one.
        shifted = val.to(torch.int64) << (pos & 31)
        word = (pos >> 5).to(torch.int64)
        packed.scatter_add_(0, word, shifted & 0xFFFFFFFF)
        packed.scatter_add_(0, word + 1, shifted >> 32)
    as_bytes = ((packed[:-1].unsqueeze(1) >> torch.tensor([0, 8, 16, 24], device=device)) & 255).to(torch.uint8)
    host = as_bytes.reshape(-1).cpu().numpy()
    return [host[w * 4: w * 4 + (size + 7) // 8].tobytes() for w, size in zip(first_word, sizes)]


# ---------------------------------------------------------------------------------------------- on the host
class _HuffmanTable:
    """A deflate code for the 286 literal/length symbols: lengths at most 15 bits, canonical codes stored
    bit-reversed (deflate sends a code's first bit first, into the low bits of each byte), and the block header
    that describes it, as (bit offset, value) pieces after the zlib header."""

    def __init__(self, weights: np.ndarray):
        self.lengths = _limited_lengths(weights.astype(np.int64))
        self.codes = _canonical_codes(self.lengths)
        values = np.concatenate([_HEADER_PREFIX_VALUES, _CL_CODES[self.lengths], [_CL_CODES[1]]])
        sizes = np.concatenate([_HEADER_PREFIX_SIZES, np.full(_NONE + 1, _CL_LENGTH)])
        self.header_values = values.astype(np.int64)
        self.header_positions = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _reverse_bits(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each code's ``length`` low bits in reverse order (codes of at most 16 bits)."""
    wide = (_REVERSED_BYTE[codes & 255] << 8) | _REVERSED_BYTE[(codes >> 8) & 255]
    return wide >> (16 - lengths)


_REVERSED_BYTE = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], dtype=np.int64)
_CL_CODES = _reverse_bits(np.arange(16), np.full(16, _CL_LENGTH))     # canonical: symbol s has code s
# The zlib header, then the block header up to the code lengths: last block, dynamic codes, 286 literal/length
# codes, 1 distance code, 19 code-length codes and their lengths in RFC 1951's order.
_HEADER_PREFIX = [(0x78, 8), (0x01, 8), (1, 1), (2, 2), (_NONE - 257, 5), (0, 5), (len(_CL_ORDER) - 4, 4)]
_HEADER_PREFIX += [(_CL_LENGTH if symbol < 16 else 0, 3) for symbol in _CL_ORDER]
_HEADER_PREFIX_VALUES = np.array([v for v, _ in _HEADER_PREFIX], dtype=np.int64)
_HEADER_PREFIX_SIZES = np.array([n for _, n in _HEADER_PREFIX], dtype=np.int64)
# ... then 286 literal/length code lengths and one distance code length (1: never used, but a complete code)
_HEADER_BITS = int(_HEADER_PREFIX_SIZES.sum()) + _CL_LENGTH * (_NONE + 1)


def _limited_lengths(weights: np.ndarray) -> np.ndarray:
    """Huffman code lengths of the symbols with a weight, none longer than 15 bits. Where the tree is deeper, the
    count of codes per length is evened out as JPEG's Annex K.3 does (two of the longest become one a bit shorter
    and a shorter one becomes two one bit longer), and the lengths go back to the symbols by weight."""
    used = np.flatnonzero(weights)
    depths = _huffman_depths(weights[used])
    lengths = np.zeros(len(weights), dtype=np.int64)
    if depths.max() > _MAX_BITS:
        per_length = np.bincount(depths).tolist()
        for longest in range(len(per_length) - 1, _MAX_BITS, -1):
            while per_length[longest] > 0:
                shorter = longest - 2
                while per_length[shorter] == 0:
                    shorter -= 1
                per_length[longest] -= 2
                per_length[longest - 1] += 1
                per_length[shorter + 1] += 2
                per_length[shorter] -= 1
        by_weight = used[np.lexsort((used, -weights[used]))]       # heaviest first, ties by symbol
        depths_sorted = np.repeat(np.arange(_MAX_BITS + 1), per_length[:_MAX_BITS + 1])
        lengths[by_weight] = depths_sorted
        return lengths
    lengths[used] = depths
    return lengths


def _huffman_depths(weights: np.ndarray) -> np.ndarray:
    count = len(weights)
    heap = [(int(w), i) for i, w in enumerate(weights)]
    heapq.heapify(heap)
    parent = [0] * (2 * count - 1)
    node = count
    while len(heap) > 1:
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = parent[b] = node
        heapq.heappush(heap, (w1 + w2, node))
        node += 1
    depth = [0] * (2 * count - 1)
    for i in range(node - 2, -1, -1):         # a parent is always made after its children
        depth[i] = depth[parent[i]] + 1
    return np.array(depth[:count], dtype=np.int64)


def _canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """RFC 1951, 3.2.2: codes of one length are consecutive in symbol order; returned bit-reversed."""
    per_length = np.bincount(lengths, minlength=_MAX_BITS + 1)
    per_length[0] = 0
    first = np.zeros(_MAX_BITS + 1, dtype=np.int64)
    code = 0
    for bits in range(1, _MAX_BITS + 1):
        code = (code + int(per_length[bits - 1])) << 1
        first[bits] = code
    order = np.lexsort((np.arange(len(lengths)), lengths))
    order = order[lengths[order] > 0]
    sorted_lengths = lengths[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_lengths, sorted_lengths)
    codes = np.zeros(len(lengths), dtype=np.int64)
    codes[order] = _reverse_bits(first[sorted_lengths] + rank, sorted_lengths)
    return codes


def _ihdr(width: int, height: int, channels: int) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0))


def _png(ihdr: bytes, stream: bytes, adler: int) -> bytes:
    idat = stream + struct.pack(">I", adler)
    return b"".join([_PNG_SIGNATURE, ihdr, _chunk(b"IDAT", idat), _chunk(b"IEND", b"")])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return b"".join([struct.pack(">I", len(data)), kind, data, struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))])
