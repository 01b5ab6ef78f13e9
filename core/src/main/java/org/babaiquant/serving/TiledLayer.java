package org.babaiquant.serving;

import org.babaiquant.core.Half;
import org.babaiquant.nonclip.SsqrLayer;

import java.util.Arrays;

/**
 * A quantized layer repacked at load for the tensor-core GEMV ({@code gemv_tc.cu}): the weights as {@code mma.m16n8k16}
 * A-fragments (16 outputs × 16 inputs per tile, W as the left operand, the batch as the 8 or 16 columns), codes of one
 * lane laid out so that one magic-number operation per register gives two exact fp16 values {@code 1024 + q}. The pure
 * functions {@link #of(PackedGptq, int[])} / {@link #of(SsqrLayer)} build it, {@link #unpack()} inverts it (a round trip
 * is the identity), {@link #gemv} is the CPU twin of the kernel's arithmetic and reduction order.
 *
 * <h2>Input order (act-order {@code g_idx})</h2>
 * The inputs are permuted so that each group's inputs are consecutive (stably sorted by {@code g_idx}), each group's
 * run padded with empty positions to a multiple of 16 (one tile never mixes groups), and the total to a multiple of
 * {@value #CHUNK_K} (one chunk, the unit of a 16-byte-per-lane load sequence). {@code perm[k]} is the original input at
 * position k, −1 for padding (x is 0 there); {@code tileGroup[k/16]} is the group of tile k/16.
 *
 * <h2>Word map</h2>
 * <pre>
 *  words[((ot·chunks + c)·bits + l)·128 + lane·4 + v]    ot = output tile (16 outputs), c = chunk (256 inputs),
 *                                                         l = 16-byte load 0..bits−1, lane 0..31, v = word 0..3
 *  lane stream word w = 4·l + v; the 64 pairs of a lane's chunk: pair p = 4·tile + reg (16 tiles × 4 registers)
 *  plane of width B (bits 2, 4, 8: one plane; bits 3: a 2-bit plane in words 0..7 then a 1-bit plane in words 8..11):
 *    pair p sits in plane word p / (16/B), slot k = p mod (16/B): low half at bits [k·B, k·B+B), high at [16+k·B, …)
 *  register reg, half h of lane (g = lane/4, t = lane mod 4): output row g + 8·(reg mod 2), input 2t + h + 8·(reg/2)
 *    (the PTX m16n8k16 A-fragment order)
 * </pre>
 * {@code (w >> k·B) & (mask·0x00010001) | 0x64006400} read as half2 is {@code (1024 + q_lo, 1024 + q_hi)} exactly; for
 * 3 bits the 1-bit plane, shifted left by 2, is OR-ed in first. Minus {@code 1024 + z} (half2) gives {@code q − z}
 * exactly (|q − z| ≤ 255 is an fp16 integer).
 *
 * @param scales fp16 bits {@code [groups][outPad]} (0 in padded outputs)
 * @param zeros  zero points {@code [groups][outPad]}, unsigned bytes (as the reference decodes them: v1 already +1)
 * @param rowPtr CSR outliers of an SSQR layer over the original inputs (null for GPTQ), as {@link SsqrLayer}
 */
public record TiledLayer(int bits, int in, int out, int groupSize, boolean zerosV1, int groups, int outPad, int kPad,
                         int[] words, int[] perm, int[] tileGroup, short[] scales, byte[] zeros, int[] rowPtr, int[] col,
                         int[] offset) {
    /** Outputs per tile (the mma's M) and inputs per tile (its K). */
    public static final int TILE = 16;
    /** Inputs per chunk: 16 tiles, {@code bits} 16-byte loads per lane. */
    public static final int CHUNK_K = 256;
    /** Largest batch of the tiled kernels: two n8 column tiles. */
    public static final int MAX_BATCH = 16;
    /** Tiles per scale segment: the fp32 mma sum is folded into y (times the scale) at least every 8 tiles. */
    public static final int SEGMENT_TILES = 8;

    public int chunks() {
        return kPad / CHUNK_K;
    }

    public int outTiles() {
        return outPad / TILE;
    }

    /** 32-bit words per lane per chunk. */
    static int laneWords(int bits) {
        return 4 * bits;
    }

    /** Planes (width, first lane word) of a bit width. */
    static int[][] planes(int bits) {
        return bits == 3 ? new int[][] {{2, 0}, {1, 8}} : new int[][] {{bits, 0}};
    }

    // ---- repacking -------------------------------------------------------------------------------------------------

    /**
     * Repacks a GPTQ checkpoint layer; {@code gIdx} is the checkpoint's {@code g_idx} (group of each input, act-order
     * checkpoints permute it), null for {@code i / groupSize}.
     */
    public static TiledLayer of(PackedGptq p, int[] gIdx) {
        int in = p.in();
        int out = p.out();
        int groups = p.groups();
        int[] g = gIdx == null ? defaultGroups(in, p.groupSize()) : gIdx.clone();
        if (g.length != in) {
            throw new IllegalArgumentException("g_idx has " + g.length + " entries, the layer has " + in + " inputs");
        }
        for (int i = 0; i < in; i++) {
            if (g[i] < 0 || g[i] >= groups) {
                throw new IllegalArgumentException("g_idx[" + i + "] = " + g[i] + " is not a group of 0.." + (groups - 1));
            }
        }
        int mask = (1 << p.bits()) - 1;
        int zeroWords = out * p.bits() / 32;
        int[][] zero = new int[groups][out];
        short[][] scale = new short[groups][out];
        for (int k = 0; k < groups; k++) {
            for (int o = 0; o < out; o++) {
                zero[k][o] = (CpuServingKernels.element(p.qzeros(), k * zeroWords, 1, o, p.bits()) + (p.zerosV1() ? 1 : 0)) & mask;
                scale[k][o] = p.scales()[k * out + o];
            }
        }
        return build(p.bits(), in, out, p.groupSize(), p.zerosV1(), g, (o, i) -> CpuServingKernels.element(p.qweight(), o, out, i, p.bits()),
                scale, zero, null, null, null);
    }

    /** Repacks an SSQR layer's dense codes (groups {@code j / groupSize}); its CSR outliers are kept as they are. */
    public static TiledLayer of(SsqrLayer l) {
        int groups = l.groups();
        int[][] zero = new int[groups][l.rows()];
        short[][] scale = new short[groups][l.rows()];
        for (int o = 0; o < l.rows(); o++) {
            for (int k = 0; k < groups; k++) {
                zero[k][o] = l.zero()[o * groups + k];
                scale[k][o] = l.scale()[o * groups + k];
            }
        }
        return build(l.bits(), l.cols(), l.rows(), l.groupSize(), false, defaultGroups(l.cols(), l.groupSize()),
                (o, i) -> l.codes()[o * l.cols() + i], scale, zero, l.rowPtr().clone(), l.col().clone(), l.offset().clone());
    }

    private interface Codes {
        int at(int o, int i);
    }

    private static int[] defaultGroups(int in, int groupSize) {
        int[] g = new int[in];
        for (int i = 0; i < in; i++) {
            g[i] = i / groupSize;
        }
        return g;
    }

    private static TiledLayer build(int bits, int in, int out, int groupSize, boolean v1, int[] gIdx, Codes codes,
                                    short[][] scale, int[][] zero, int[] rowPtr, int[] col, int[] offset) {
        if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
            throw new IllegalArgumentException("bits = " + bits + "; the tiled GEMV supports 2, 3, 4, 8");
        }
        int groups = scale.length;
        // stable sort of the inputs by group; each group's run padded to whole tiles, the total to whole chunks
        int[] count = new int[groups];
        for (int gi : gIdx) {
            count[gi]++;
        }
        int k = 0;
        int[] start = new int[groups];
        for (int gr = 0; gr < groups; gr++) {
            start[gr] = k;
            k += roundUp(count[gr], TILE);
        }
        int kPad = Math.max(CHUNK_K, roundUp(k, CHUNK_K));
        int[] perm = new int[kPad];
        Arrays.fill(perm, -1);
        int[] tileGroup = new int[kPad / TILE];
        Arrays.fill(tileGroup, groups - 1); // trailing padding tiles: x is 0 there, any group will do
        int[] fill = start.clone();
        for (int i = 0; i < in; i++) {
            perm[fill[gIdx[i]]++] = i;
        }
        for (int gr = 0; gr < groups; gr++) {
            for (int t = start[gr] / TILE; t < (start[gr] + roundUp(count[gr], TILE)) / TILE; t++) {
                tileGroup[t] = gr;
            }
        }
        int outPad = roundUp(out, TILE);
        short[] sc = new short[groups * outPad];
        byte[] zp = new byte[groups * outPad];
        for (int gr = 0; gr < groups; gr++) {
            for (int o = 0; o < out; o++) {
                sc[gr * outPad + o] = scale[gr][o];
                zp[gr * outPad + o] = (byte) zero[gr][o];
            }
        }
        int chunks = kPad / CHUNK_K;
        int lw = laneWords(bits);
        int[] words = new int[Math.toIntExact((long) outPad / TILE * chunks * lw * 32)];
        // output tiles own disjoint word ranges: built in parallel (a 28672×8192 layer has 235 M codes)
        java.util.stream.IntStream.range(0, outPad / TILE).parallel().forEach(ot -> {
            for (int c = 0; c < chunks; c++) {
                int base = (ot * chunks + c) * lw * 32;
                for (int lane = 0; lane < 32; lane++) {
                    for (int p = 0; p < 64; p++) {
                        for (int h = 0; h < 2; h++) {
                            int o = ot * TILE + row(lane, p % 4);
                            int kp = c * CHUNK_K + (p / 4) * TILE + kIn(lane, p % 4, h);
                            int i = perm[kp];
                            int q = o < out && i >= 0 ? codes.at(o, i) : 0;
                            for (int[] plane : planes(bits)) {
                                int b = plane[0];
                                int per = 16 / b;
                                int w = plane[1] + p / per;
                                int shift = 16 * h + (p % per) * b;
                                int part = bits == 3 && b == 1 ? q >>> 2 : q & ((1 << b) - 1);
                                words[base + (w / 4) * 128 + lane * 4 + w % 4] |= part << shift;
                            }
                        }
                    }
                }
            }
        });
        return new TiledLayer(bits, in, out, groupSize, v1, groups, outPad, kPad, words, perm, tileGroup, sc, zp, rowPtr,
                col, offset);
    }

    /** Output row (within the tile) of register {@code reg} of {@code lane}. */
    static int row(int lane, int reg) {
        return lane / 4 + 8 * (reg % 2);
    }

    /** Input (within the tile) of half {@code h} of register {@code reg} of {@code lane}. */
    static int kIn(int lane, int reg, int h) {
        return 2 * (lane % 4) + h + 8 * (reg / 2);
    }

    private static int roundUp(int v, int m) {
        return (v + m - 1) / m * m;
    }

    /** Code of output {@code o} at permuted input position {@code kp}, read back from the word map. */
    public int code(int o, int kp) {
        int ot = o / TILE;
        int r = o % TILE;
        int c = kp / CHUNK_K;
        int tile = (kp % CHUNK_K) / TILE;
        int kk = kp % TILE;
        // invert row()/kIn(): reg = (r ≥ 8) + 2·(kk ≥ 8), lane = 4·(r mod 8) + (kk mod 8)/2, h = kk mod 2
        int reg = (r >= 8 ? 1 : 0) + (kk >= 8 ? 2 : 0);
        int lane = 4 * (r % 8) + (kk % 8) / 2;
        int h = kk % 2;
        int p = 4 * tile + reg;
        int base = (ot * chunks() + c) * laneWords(bits) * 32;
        int q = 0;
        for (int[] plane : planes(bits)) {
            int b = plane[0];
            int per = 16 / b;
            int w = plane[1] + p / per;
            int v = (words[base + (w / 4) * 128 + lane * 4 + w % 4] >>> (16 * h + (p % per) * b)) & ((1 << b) - 1);
            q |= bits == 3 && b == 1 ? v << 2 : v;
        }
        return q;
    }

    /** The group of every original input (the {@code g_idx} this layer was built with). */
    public int[] gIdx() {
        int[] g = new int[in];
        for (int kp = 0; kp < kPad; kp++) {
            if (perm[kp] >= 0) {
                g[perm[kp]] = tileGroup[kp / TILE];
            }
        }
        return g;
    }

    /** The checkpoint layer this was repacked from (GPTQ only): {@code of(unpack(), gIdx())} rebuilds this layer. */
    public PackedGptq unpack() {
        if (rowPtr != null) {
            throw new IllegalStateException("an SSQR layer does not unpack to a GPTQ checkpoint");
        }
        int[][] codes = new int[out][in];
        for (int kp = 0; kp < kPad; kp++) {
            int i = perm[kp];
            if (i >= 0) {
                for (int o = 0; o < out; o++) {
                    codes[o][i] = code(o, kp);
                }
            }
        }
        int mask = (1 << bits) - 1;
        int[][] zero = new int[groups][out];
        short[] sc = new short[groups * out];
        for (int gr = 0; gr < groups; gr++) {
            for (int o = 0; o < out; o++) {
                // stored as decoded; v1 writes zero − 1 back (mod 2^bits, as the checkpoint's wrap-around)
                zero[gr][o] = ((zeros[gr * outPad + o] & 0xFF) - (zerosV1 ? 1 : 0)) & mask;
                sc[gr * out + o] = scales[gr * outPad + o];
            }
        }
        int[] qweight = PackedGptq.flatten(org.babaiquant.core.GptqPacking.packQweight(codes, bits));
        int[] qzeros = PackedGptq.flatten(org.babaiquant.core.GptqPacking.packQzeros(zero, bits, false));
        return new PackedGptq(bits, groupSize, in, out, qweight, qzeros, sc, zerosV1);
    }

    // ---- the kernel's arithmetic on the CPU --------------------------------------------------------------------------

    /** Warps the split-K rule aims at (≈ 8 per SM of a 132-SM H200; a function of the shape only, so any GPU sums alike). */
    static final int TARGET_WARPS = 1024;

    /** The kernel's split-K count: enough (16-output tile, split) warps to fill the GPU, at most one per chunk. */
    public int defaultSplits() {
        return Math.max(1, Math.min(chunks(), (TARGET_WARPS + outTiles() - 1) / outTiles()));
    }

    /** The split-K partition the kernel uses: split s covers chunks {@code [s·chunks/splits, (s+1)·chunks/splits)}. */
    public static int splitStart(int s, int chunks, int splits) {
        return (int) ((long) s * chunks / splits);
    }

    /**
     * Per batch row, the power of two {@code e} that brings {@code max |x_b|} into {@code [2^13, 2^14)} (0 for a zero
     * row): x is scaled by {@code 2^e} before its fp16 split and y by {@code 2^−e} after (both exact), so that fp16's
     * range and subnormals never decide the error, whatever the activations' magnitude.
     */
    public static int[] exponents(float[] x, int batch, int in) {
        int[] e = new int[batch];
        for (int b = 0; b < batch; b++) {
            float m = 0f;
            for (int i = 0; i < in; i++) {
                m = Math.max(m, Math.abs(x[b * in + i]));
            }
            e[b] = m > 0 ? 13 - Math.getExponent(m) : 0;
        }
        return e;
    }

    /**
     * {@code y = X·Wᵀ} ([batch][out], batch 1..{@value #MAX_BATCH}) computed as {@code gemv_tc} computes it: x scaled
     * per row by {@link #exponents} and split
     * into fp16 {@code hi = fp16(x)}, {@code lo = fp16(x − hi)}; per tile the exact integers {@code q − z} times hi,
     * then times lo, summed in fp32 (the mma; its internal order is modelled as sequential); the tile sum folded into
     * y by {@code y = fma(s, c, y)} at every group change and every {@value #SEGMENT_TILES} tiles; y of each split
     * stored, the splits summed in split order and scaled back by {@code 2^−e}, then the CSR outliers added as
     * {@code fma(x·s, offset, y)}.
     */
    public float[] gemv(float[] x, int batch, int splits) {
        if (batch < 1 || batch > MAX_BATCH || x.length != (long) batch * in) {
            throw new IllegalArgumentException("x has " + x.length + " values for batch " + batch + " × in " + in
                    + " (batch must be in 1.." + MAX_BATCH + ")");
        }
        int chunks = chunks();
        if (splits < 1 || splits > chunks) {
            throw new IllegalArgumentException("splits must be in 1.." + chunks + ", got " + splits);
        }
        int[] exps = exponents(x, batch, in);
        float[] xh = new float[batch * kPad];
        float[] xl = new float[batch * kPad];
        for (int b = 0; b < batch; b++) {
            for (int kp = 0; kp < kPad; kp++) {
                float v = perm[kp] < 0 ? 0f : Math.scalb(x[b * in + perm[kp]], exps[b]);
                float hi = Half.toFloat(Half.fromFloat(v));
                xh[b * kPad + kp] = hi;
                xl[b * kPad + kp] = Half.toFloat(Half.fromFloat(v - hi));
            }
        }
        float[] partial = new float[splits * batch * out];
        for (int o = 0; o < out; o++) {
            for (int s = 0; s < splits; s++) {
                int t0 = splitStart(s, chunks, splits) * (CHUNK_K / TILE);
                int t1 = splitStart(s + 1, chunks, splits) * (CHUNK_K / TILE);
                for (int b = 0; b < batch; b++) {
                    float y = 0f;
                    float c = 0f;
                    for (int t = t0; t < t1; t++) {
                        int gr = tileGroup[t];
                        float z = zeros[gr * outPad + o] & 0xFF;
                        for (int pass = 0; pass < 2; pass++) {
                            float[] xs = pass == 0 ? xh : xl;
                            for (int kk = 0; kk < TILE; kk++) {
                                int kp = t * TILE + kk;
                                c = Math.fma(code(o, kp) - z, xs[b * kPad + kp], c);
                            }
                        }
                        if (t + 1 == t1 || tileGroup[t + 1] != gr || (t + 1) % SEGMENT_TILES == 0) {
                            y = Math.fma(Half.toFloat(scales[gr * outPad + o]), c, y);
                            c = 0f;
                        }
                    }
                    partial[(s * batch + b) * out + o] = y;
                }
            }
        }
        float[] y = new float[batch * out];
        for (int b = 0; b < batch; b++) {
            for (int o = 0; o < out; o++) {
                float sum = 0f;
                for (int s = 0; s < splits; s++) {
                    sum += partial[(s * batch + b) * out + o];
                }
                sum = Math.scalb(sum, -exps[b]);
                if (rowPtr != null) {
                    for (int k = rowPtr[o]; k < rowPtr[o + 1]; k++) {
                        int j = col[k];
                        float sc = Half.toFloat(scales[(j / groupSize) * outPad + o]);
                        sum = Math.fma(x[b * in + j] * sc, (float) offset[k], sum);
                    }
                }
                y[b * out + o] = sum;
            }
        }
        return y;
    }
}
