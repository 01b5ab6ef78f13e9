package org.babaiquant.nonclip;

import org.babaiquant.BadInputException;

import java.util.Arrays;

/**
 * A canonical Huffman code over symbols {@code 0 … K−1}, limited to {@value #MAX_CODE_LENGTH}-bit codewords, with a
 * table-driven decoder. The code is fully described by one length per symbol (0 = symbol absent), which is what a
 * file stores; the codewords follow from the lengths by the canonical rule of DEFLATE (RFC 1951 §3.2.2):
 * <pre>
 *   sort the present symbols by (length, symbol);
 *   code = 0; for each length ℓ = 1 … L: first[ℓ] = code; code = (code + count[ℓ]) &lt;&lt; 1
 *   the i-th symbol of length ℓ gets codeword first[ℓ] + i, written most significant bit first.
 * </pre>
 * Example, lengths {@code [2, 1, 3, 3]} (symbol 1 most frequent): symbol 1 → {@code 0}, 0 → {@code 10},
 * 2 → {@code 110}, 3 → {@code 111}.
 *
 * <p><b>Valid tables.</b> Every length is in {@code 0 … L}, and the code is complete: {@code Σ 2^−ℓ = 1} over present
 * symbols (every optimal code with two or more symbols is). The one exception is a single present symbol, which gets
 * the one-bit codeword {@code 0} (a zero-bit code would make the payload length meaningless). Anything else is a
 * corrupt table: an over-full code is ambiguous, an incomplete one leaves bit strings that decode to nothing.
 *
 * <p><b>Why the length limit, and why 24.</b> The decoder peeks {@value #LOOKUP_BITS} bits and resolves almost every
 * symbol with one table load; longer codewords (probability below 2^−11 each) fall back to a per-length search of at
 * most {@code L − 11} steps. A 64-bit bit buffer refilled to ≥ 57 bits always holds a whole codeword when
 * {@code L ≤ 57}; 24 keeps the fallback short and still admits alphabets of 2^20 symbols (the limit needs
 * {@code K ≤ 2^L}). Huffman gives a symbol of probability p about log2(1/p) bits, so a few extreme codes among the
 * 45 million weights of a 4096×11008 matrix can ask for 25 or more; then the lengths are rebalanced as in JPEG (ITU
 * T.81, Annex K.3), which keeps the code complete and moves only those rare symbols, at a negligible cost in bits.
 */
public final class CanonicalHuffman {
    private CanonicalHuffman() {}

    public static final int MAX_CODE_LENGTH = 24;
    /** Largest alphabet: 2^20 symbols (a code of that many symbols needs lengths ≥ 20, within the limit). */
    public static final int MAX_ALPHABET = 1 << 20;
    /** Bits resolved by one primary-table load: 2^11 ints = 8 KiB, comfortably inside L1. */
    static final int LOOKUP_BITS = 11;

    // ------------------------------------------------------------------------------------------------ building

    /**
     * Optimal (Huffman) codeword lengths for the symbol frequencies, limited to {@link #MAX_CODE_LENGTH}; absent
     * symbols (frequency 0) get length 0. Deterministic: ties are broken by symbol index.
     *
     * @throws IllegalArgumentException for an empty or oversized alphabet, negative frequencies, or no symbol present
     */
    public static byte[] codeLengths(long[] freq) {
        int k = freq.length;
        if (k < 1 || k > MAX_ALPHABET) {
            throw new IllegalArgumentException("alphabet size " + k + " is outside 1.." + MAX_ALPHABET);
        }
        int m = 0;
        for (int s = 0; s < k; s++) {
            if (freq[s] < 0) {
                throw new IllegalArgumentException("negative frequency " + freq[s] + " for symbol " + s);
            }
            if (freq[s] > 0) {
                m++;
            }
        }
        if (m == 0) {
            throw new IllegalArgumentException("no symbol has a positive frequency");
        }
        // present symbols, by descending frequency then ascending symbol: the order lengths are handed out in
        Integer[] boxed = new Integer[m];
        for (int s = 0, i = 0; s < k; s++) {
            if (freq[s] > 0) {
                boxed[i++] = s;
            }
        }
        Arrays.sort(boxed, (a, b) -> freq[a] != freq[b] ? Long.compare(freq[b], freq[a]) : Integer.compare(a, b));
        int[] byFreq = new int[m];
        for (int i = 0; i < m; i++) {
            byFreq[i] = boxed[i];
        }
        byte[] lengths = new byte[k];
        if (m == 1) {
            lengths[byFreq[0]] = 1;
            return lengths;
        }
        int[] countOfLength = huffmanLengthHistogram(freq, byFreq);
        limitLengths(countOfLength);
        // most frequent symbols take the shortest lengths: the same multiset of lengths, so still optimal
        int i = 0;
        for (int len = 1; len <= MAX_CODE_LENGTH; len++) {
            for (int c = 0; c < countOfLength[len]; c++) {
                lengths[byFreq[i++]] = (byte) len;
            }
        }
        return lengths;
    }

    /**
     * Histogram of Huffman leaf depths (index = depth), by the two-queue construction on the leaves sorted by
     * ascending weight: O(m) after the sort, no heap.
     */
    private static int[] huffmanLengthHistogram(long[] freq, int[] byFreqDesc) {
        int m = byFreqDesc.length;
        int nodes = 2 * m - 1;
        long[] weight = new long[nodes];
        int[] parent = new int[nodes];
        for (int i = 0; i < m; i++) {
            weight[i] = freq[byFreqDesc[m - 1 - i]]; // leaves ascending
        }
        int leaf = 0;
        int internal = m; // next internal node to consume
        for (int next = m; next < nodes; next++) {
            int a = (leaf < m && (internal >= next || weight[leaf] <= weight[internal])) ? leaf++ : internal++;
            int b = (leaf < m && (internal >= next || weight[leaf] <= weight[internal])) ? leaf++ : internal++;
            weight[next] = weight[a] + weight[b];
            parent[a] = next;
            parent[b] = next;
        }
        int[] depth = new int[nodes];
        int maxDepth = 0;
        for (int v = nodes - 2; v >= 0; v--) { // parents are created after their children
            depth[v] = depth[parent[v]] + 1;
            if (v < m) {
                maxDepth = Math.max(maxDepth, depth[v]);
            }
        }
        int[] hist = new int[Math.max(maxDepth, MAX_CODE_LENGTH) + 1];
        for (int v = 0; v < m; v++) {
            hist[depth[v]]++;
        }
        return hist;
    }

    /**
     * JPEG Annex K.3: while a leaf is deeper than the limit, take two leaves of the deepest level ℓ, give one of them
     * their parent's place at ℓ−1, and hang the other together with a leaf of the deepest level j &lt; ℓ−1 that has
     * one, both at j+1. Each move keeps the Kraft sum (−2·2^−ℓ + 2^−(ℓ−1) − 2^−j + 2·2^−(j+1) = 0) and the leaf count.
     */
    private static void limitLengths(int[] count) {
        for (int len = count.length - 1; len > MAX_CODE_LENGTH; len--) {
            while (count[len] > 0) {
                int j = len - 2;
                while (count[j] == 0) {
                    j--;
                }
                count[len] -= 2;
                count[len - 1] += 1;
                count[j + 1] += 2;
                count[j] -= 1;
            }
        }
    }

    /** Σ freq·length: the payload bits of a stream with these symbol counts. */
    public static long payloadBits(long[] freq, byte[] lengths) {
        long bits = 0;
        for (int s = 0; s < freq.length; s++) {
            bits += freq[s] * lengths[s];
        }
        return bits;
    }

    // ------------------------------------------------------------------------------------------------ tables

    /**
     * Checks a stored length table (see the class comment) and returns the number of present symbols.
     *
     * @throws BadInputException "corrupt Huffman table: …" naming what is wrong
     */
    public static int validate(byte[] lengths) {
        if (lengths.length < 1 || lengths.length > MAX_ALPHABET) {
            throw new BadInputException("corrupt Huffman table: alphabet size " + lengths.length + " is outside 1.."
                    + MAX_ALPHABET);
        }
        long kraft = 0; // Σ 2^(L − ℓ): a complete code has exactly 2^L
        int present = 0;
        int onlyLength = 0;
        for (int s = 0; s < lengths.length; s++) {
            int len = lengths[s] & 0xFF;
            if (len > MAX_CODE_LENGTH) {
                throw new BadInputException("corrupt Huffman table: symbol " + s + " has code length " + len
                        + " > " + MAX_CODE_LENGTH);
            }
            if (len > 0) {
                present++;
                onlyLength = len;
                kraft += 1L << (MAX_CODE_LENGTH - len);
            }
        }
        if (present == 0) {
            throw new BadInputException("corrupt Huffman table: no symbol has a code");
        }
        if (present == 1) {
            if (onlyLength != 1) {
                throw new BadInputException("corrupt Huffman table: a single symbol must have code length 1, got "
                        + onlyLength);
            }
            return 1;
        }
        long full = 1L << MAX_CODE_LENGTH;
        if (kraft != full) {
            throw new BadInputException("corrupt Huffman table: code lengths are " + (kraft > full
                    ? "over-subscribed (Kraft sum " + kraft / (double) full + " > 1: codewords would collide)"
                    : "incomplete (Kraft sum " + kraft / (double) full + " < 1: some bit strings decode to nothing)"));
        }
        return present;
    }

    /** Canonical codewords for valid lengths (see the class comment); absent symbols get 0. */
    static int[] canonicalCodes(byte[] lengths) {
        int[] count = new int[MAX_CODE_LENGTH + 1];
        for (byte l : lengths) {
            count[l & 0xFF]++;
        }
        count[0] = 0;
        int[] next = new int[MAX_CODE_LENGTH + 2];
        int code = 0;
        for (int len = 1; len <= MAX_CODE_LENGTH; len++) {
            next[len] = code;
            code = (code + count[len]) << 1;
        }
        int[] codes = new int[lengths.length];
        for (int s = 0; s < lengths.length; s++) { // ascending symbol within each length
            int len = lengths[s] & 0xFF;
            if (len > 0) {
                codes[s] = next[len]++;
            }
        }
        return codes;
    }

    // ------------------------------------------------------------------------------------------------ coding

    /**
     * The codewords of {@code symbols} concatenated, most significant bit first, zero-padded to a whole
     * byte: exactly {@code ⌈payloadBits/8⌉} bytes.
     */
    public static byte[] encode(int[] symbols, byte[] lengths) {
        validate(lengths);
        int[] codes = canonicalCodes(lengths);
        long bits = 0;
        for (int s : symbols) {
            int len = s >= 0 && s < lengths.length ? lengths[s] : 0;
            if (len == 0) {
                throw new IllegalArgumentException("symbol " + s + " has no codeword");
            }
            bits += len;
        }
        long nbytes = (bits + 7) >>> 3;
        if (nbytes > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("encoded stream of " + nbytes + " bytes exceeds a Java array");
        }
        byte[] out = new byte[(int) nbytes];
        long acc = 0; // low `pending` bits are not yet written; anything above them is stale and ignored
        int pending = 0;
        int p = 0;
        for (int s : symbols) {
            acc = (acc << lengths[s]) | codes[s];
            pending += lengths[s];
            while (pending >= 8) {
                pending -= 8;
                out[p++] = (byte) (acc >>> pending);
            }
        }
        if (pending > 0) {
            out[p] = (byte) (acc << (8 - pending));
        }
        return out;
    }

    /** A decoder for one validated length table; immutable, so one instance may decode from many threads. */
    public static final class Decoder {
        /** Primary table indexed by the next {@link #LOOKUP_BITS} bits: {@code symbol << 5 | length}, 0 = longer. */
        private final int[] table = new int[1 << LOOKUP_BITS];
        private final int[] count = new int[MAX_CODE_LENGTH + 1];
        private final int[] first = new int[MAX_CODE_LENGTH + 1];
        /** Index into {@link #sorted} of the first symbol of each length. */
        private final int[] offset = new int[MAX_CODE_LENGTH + 1];
        /** Present symbols sorted by (length, symbol): the canonical order. */
        private final int[] sorted;
        private final int maxLength;
        private final int alphabet;

        /** @throws BadInputException for a corrupt table (see {@link #validate}) */
        public Decoder(byte[] lengths) {
            int present = validate(lengths);
            alphabet = lengths.length;
            int maxLen = 0;
            for (byte l : lengths) {
                count[l & 0xFF]++;
                maxLen = Math.max(maxLen, l & 0xFF);
            }
            count[0] = 0;
            maxLength = maxLen;
            int code = 0;
            int idx = 0;
            for (int len = 1; len <= MAX_CODE_LENGTH; len++) {
                first[len] = code;
                offset[len] = idx;
                idx += count[len];
                code = (code + count[len]) << 1;
            }
            sorted = new int[present];
            int[] fill = offset.clone();
            for (int s = 0; s < lengths.length; s++) {
                int len = lengths[s] & 0xFF;
                if (len > 0) {
                    sorted[fill[len]++] = s;
                }
            }
            int[] codes = canonicalCodes(lengths);
            for (int s = 0; s < lengths.length; s++) {
                int len = lengths[s] & 0xFF;
                if (len > 0 && len <= LOOKUP_BITS) {
                    int lo = codes[s] << (LOOKUP_BITS - len);
                    int hi = lo + (1 << (LOOKUP_BITS - len));
                    Arrays.fill(table, lo, hi, (s << 5) | len);
                }
            }
        }

        public int alphabetSize() {
            return alphabet;
        }

        /**
         * Decodes {@code out.length} symbols from {@code src[offset …]}, which must hold exactly {@code bitCount}
         * bits of codewords (padding after them is ignored).
         *
         * @throws BadInputException when the bits do not decode to exactly that many symbols
         */
        public void decode(byte[] src, int offset, long bitCount, int[] out) {
            run(src, offset, bitCount, out.length, out, null, null);
        }

        /**
         * As {@link #decode}, writing {@code value[symbol]} instead of the symbol: the dequantizing decoder, one
         * table load and one value load per weight.
         */
        public void decodeValues(byte[] src, int offset, long bitCount, float[] value, float[] out) {
            if (value.length < alphabet) {
                throw new IllegalArgumentException("value table has " + value.length + " entries for " + alphabet
                        + " symbols");
            }
            run(src, offset, bitCount, out.length, null, value, out);
        }

        private void run(byte[] src, int off, long bitCount, int n, int[] symOut, float[] value, float[] valOut) {
            long avail = (bitCount + 7) >>> 3;
            if (off < 0 || avail > src.length - (long) off) {
                throw new BadInputException("Huffman payload truncated: " + bitCount + " bits need " + avail
                        + " bytes at offset " + off + ", have " + (src.length - (long) off));
            }
            int end = off + (int) avail;
            int pos = off; // may run past `end`: virtual zero bytes, caught by the bit count check below
            long acc = 0;  // unread bits, left-aligned
            int nbits = 0;
            final int[] tbl = table;
            for (int i = 0; i < n; i++) {
                if (nbits < MAX_CODE_LENGTH) {
                    while (nbits <= 56) {
                        long b = pos < end ? src[pos] & 0xFFL : 0L;
                        pos++;
                        acc |= b << (56 - nbits);
                        nbits += 8;
                    }
                }
                int e = tbl[(int) (acc >>> (64 - LOOKUP_BITS))];
                int sym;
                int len;
                if (e != 0) {
                    sym = e >>> 5;
                    len = e & 31;
                } else {
                    len = LOOKUP_BITS + 1;
                    sym = -1;
                    for (; len <= maxLength; len++) {
                        int idx = (int) (acc >>> (64 - len)) - first[len];
                        if (idx >= 0 && idx < count[len]) {
                            sym = sorted[offset[len] + idx];
                            break;
                        }
                    }
                    if (sym < 0) {
                        throw new BadInputException("Huffman payload corrupt: bits at position "
                                + ((pos - off) * 8L - nbits) + " match no codeword (symbol " + i + ")");
                    }
                }
                acc <<= len;
                nbits -= len;
                if (symOut != null) {
                    symOut[i] = sym;
                } else {
                    valOut[i] = value[sym];
                }
            }
            long used = (pos - (long) off) * 8 - nbits;
            if (used != bitCount) {
                throw new BadInputException("Huffman payload corrupt: " + n + " symbols used " + used
                        + " bits but the stream holds " + bitCount + (used > bitCount
                        ? " (the stream ends inside a codeword)" : " (bits left over after the last symbol)"));
            }
        }
    }
}
