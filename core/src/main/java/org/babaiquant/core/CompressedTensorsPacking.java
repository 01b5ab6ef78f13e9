package org.babaiquant.core;

/**
 * The tensors of compressed-tensors' {@code pack-quantized} format (what llm-compressor writes and vLLM's
 * {@code CompressedTensorsWNA16} scheme loads) for one quantized linear {@code P}, from our unsigned codes and zero
 * points. Learned from compressed-tensors 0.16.0 ({@code compressors/quantized_compressors/pack_quantized.py}:
 * {@code compress_weight}, {@code pack_to_int32}, {@code compression_param_info}) and 0.18.0
 * ({@code compressors/pack_quantized/base.py}, {@code helpers.py}), and vLLM's
 * {@code compressed_tensors/schemes/compressed_tensors_wNa16.py} ({@code create_weights}):
 * <pre>
 *   P.weight_packed      int32 [out, ceil(in·bits/32)]   row o = bit stream of codes[o][0 .. in-1] (packed along the
 *                                                         input axis, NOT transposed: GPTQ's qweight transposed)
 *   P.weight_scale       model dtype [out, groups]       (we write F16: see below)
 *   P.weight_zero_point  int32 [ceil(out·bits/32), groups]  asymmetric only: column g = bit stream of
 *                                                         zeros[0 .. out-1][g] (packed along the OUTPUT axis)
 *   P.weight_shape       int64 [2] = {out, in}
 *   P.weight_g_idx       int32 [in]                      only with actorder "group": g_idx[i] = group of input i
 * </pre>
 * <b>Bit stream</b> (both versions agree for bits 2, 4 and 8): element {@code k} occupies bits
 * {@code [bits·k, bits·k + bits)} of the stream, bit {@code b} being bit {@code b % 32} (LSB first) of word
 * {@code b / 32}; no element crosses a word. This is exactly {@link GptqPacking}'s stream, so the words are computed
 * there. For 3, 5, 6, 7 bits the versions differ (0.16 puts {@code 32 / bits} elements per word and pads; 0.17+ streams
 * across word boundaries), so this class refuses them rather than guess a reader's version.
 *
 * <p><b>Signed codes.</b> compressed-tensors quantizes to signed integers {@code q ∈ [-2^(bits-1), 2^(bits-1) - 1]}
 * with a signed zero point {@code zp}, dequantizes {@code (q - zp) · scale}, and adds {@code 2^(bits-1)} to both
 * before packing ({@code pack_to_int32}'s offset). Our codes are unsigned {@code c = q + 2^(bits-1)} in
 * {@code [0, 2^bits - 1]} and our zero points {@code z = zp + 2^(bits-1)}, so the packed values are our codes and
 * zero points unchanged and {@code (c - z) · scale = (q - zp) · scale}. A symmetric scheme stores no zero point:
 * {@code zp = 0}, i.e. every one of our zero points must be {@code 2^(bits-1)} (our symmetric grid's midpoint).
 */
public final class CompressedTensorsPacking {

    private CompressedTensorsPacking() {
    }

    /** Bit widths whose stream every compressed-tensors version reads the same way. */
    public static boolean supportedBits(int bits) {
        return bits == 2 || bits == 4 || bits == 8;
    }

    /** {@code weight_packed [out][in·bits/32]} of unsigned {@code codes[out][in]}; {@code in} must fill whole words. */
    public static int[][] weightPacked(int[][] codes, int bits) {
        checkBits(bits);
        return transpose(GptqPacking.packQweight(codes, bits));
    }

    /** Inverse of {@link #weightPacked}: the unsigned codes {@code [out][in]}. */
    public static int[][] unpackWeight(int[][] packed, int bits, int in) {
        checkBits(bits);
        return GptqPacking.unpackQweight(transpose(packed), bits, in);
    }

    /**
     * {@code weight_zero_point [out·bits/32][groups]} of unsigned {@code zeros[out][groups]} (the true zero points,
     * {@code 0 .. 2^bits - 1}); {@code out} must fill whole words.
     */
    public static int[][] zeroPointPacked(int[][] zeros, int bits) {
        checkBits(bits);
        return transpose(GptqPacking.packQzeros(transpose(zeros), bits, false));
    }

    /** Inverse of {@link #zeroPointPacked}: the unsigned zero points {@code [out][groups]}. */
    public static int[][] unpackZeroPoint(int[][] packed, int bits, int out) {
        checkBits(bits);
        return transpose(GptqPacking.unpackQzeros(transpose(packed), bits, out, false));
    }

    /** The zero point every group must have for a symmetric scheme ({@code zp = 0} after the offset). */
    public static int symmetricZero(int bits) {
        return 1 << (bits - 1);
    }

    /**
     * The first group whose zero point is not {@link #symmetricZero} as {@code {row, group}}, or null when every one
     * is: then the layer can be written as a symmetric scheme.
     */
    public static int[] firstAsymmetricZero(int[][] zeros, int bits) {
        int z = symmetricZero(bits);
        for (int r = 0; r < zeros.length; r++) {
            for (int g = 0; g < zeros[r].length; g++) {
                if (zeros[r][g] != z) {
                    return new int[] {r, g};
                }
            }
        }
        return null;
    }

    private static void checkBits(int bits) {
        if (!supportedBits(bits)) {
            throw new IllegalArgumentException(bits + "-bit codes: compressed-tensors pack-quantized is written for 2, 4 or 8 bits "
                    + "(at other widths its versions pack differently)");
        }
    }

    private static int[][] transpose(int[][] m) {
        int rows = m.length;
        int cols = m[0].length;
        int[][] t = new int[cols][rows];
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < cols; j++) {
                t[j][i] = m[i][j];
            }
        }
        return t;
    }
}
