package org.babaiquant.serving;

import org.babaiquant.core.GptqPacking;
import org.babaiquant.core.Half;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;

/**
 * A GPTQ checkpoint layer as {@link GptqPacking} writes it, flat: {@code qweight} int32 [in·bits/32][out],
 * {@code qzeros} int32 [groups][out·bits/32] ({@code zerosV1}: stored as zero − 1), {@code scales} fp16 bits
 * [groups][out]. Input i belongs to group {@code i / groupSize} (our grids are static on original columns, so
 * {@code g_idx} is always that even for act-order).
 */
public record PackedGptq(int bits, int groupSize, int in, int out, int[] qweight, int[] qzeros, short[] scales,
                         boolean zerosV1) {
    public PackedGptq {
        if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
            throw new IllegalArgumentException("bits = " + bits + "; GPTQ packing supports 2, 3, 4, 8");
        }
        if (groupSize < 1 || groupSize > in) {
            throw new IllegalArgumentException("group size " + groupSize + " must be in 1.." + in);
        }
        int groups = groups(in, groupSize);
        if (qweight.length != (long) in * bits / 32 * out || qzeros.length != (long) groups * out * bits / 32
                || scales.length != (long) groups * out) {
            throw new IllegalArgumentException("packed layer " + out + "x" + in + " g" + groupSize + " " + bits
                    + "-bit: qweight " + qweight.length + ", qzeros " + qzeros.length + ", scales "
                    + scales.length + " elements do not match");
        }
    }

    public int groups() {
        return groups(in, groupSize);
    }

    private static int groups(int in, int groupSize) {
        return (in + groupSize - 1) / groupSize;
    }

    /**
     * Packs a quantized layer (clipped codes in [0, maxq]): scales rounded to fp16 as a checkpoint stores them,
     * zero points v2 (true zeros) unless {@code v1}.
     */
    public static PackedGptq of(QuantizedLayer q, boolean v1) {
        QuantGrid g = q.grid();
        int out = g.rows;
        int in = g.cols;
        int groups = g.groups();
        int[][] zeros = new int[groups][out];
        short[] scales = new short[groups * out];
        for (int o = 0; o < out; o++) {
            for (int k = 0; k < groups; k++) {
                zeros[k][o] = (int) g.zero[o][k];
                scales[k * out + o] = Half.fromFloat((float) g.scale[o][k]);
            }
        }
        return new PackedGptq(g.bits, g.groupSize, in, out, flatten(GptqPacking.packQweight(q.codes(), g.bits)),
                flatten(GptqPacking.packQzeros(zeros, g.bits, v1)), scales, v1);
    }

    /** Rows of equal length, row-major in one array (the checkpoint's int32 tensors). */
    static int[] flatten(int[][] m) {
        int cols = m.length == 0 ? 0 : m[0].length;
        int[] f = new int[m.length * cols];
        for (int r = 0; r < m.length; r++) {
            System.arraycopy(m[r], 0, f, r * cols, cols);
        }
        return f;
    }
}
