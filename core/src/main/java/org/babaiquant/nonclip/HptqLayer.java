package org.babaiquant.nonclip;

/**
 * One weight matrix as HPTQ/HRTN store it: a single scale for the whole matrix and one unbounded integer code per
 * weight (the lattice point itself, no clipping), {@code weight = scale · code}. The codes are what
 * {@link HptqFormat} entropy-codes; raw row-major arrays, as everywhere in the kernels.
 *
 * @param kind   how the codes were found (recorded in the file, informational)
 * @param scale  the lattice spacing, a float so that the file holds it exactly
 * @param codes  {@code [rows·cols]}, row-major, any int
 */
public record HptqLayer(Hptq.Kind kind, int rows, int cols, float scale, int[] codes) {
    public HptqLayer {
        if (rows < 1 || cols < 1 || (long) rows * cols != codes.length) {
            throw new IllegalArgumentException("HPTQ layer " + rows + "x" + cols + " with " + codes.length + " codes");
        }
        if (!(scale > 0) || Float.isInfinite(scale)) {
            throw new IllegalArgumentException("HPTQ scale must be finite and > 0, got " + scale);
        }
    }

    /** From a code matrix [rows][cols]. */
    public static HptqLayer of(Hptq.Kind kind, float scale, int[][] codes) {
        int rows = codes.length;
        int cols = codes[0].length;
        int[] flat = new int[rows * cols];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(codes[r], 0, flat, r * cols, cols);
        }
        return new HptqLayer(kind, rows, cols, scale, flat);
    }

    /**
     * {@code scale · code} rounded once to float32; the product is taken in float64, as the solver forms its
     * dequantized weights, so this equals the solver's {@code dequant} rounded to float32 bit for bit.
     */
    public float[] dequantize() {
        float[] out = new float[codes.length];
        double s = scale;
        for (int i = 0; i < codes.length; i++) {
            out[i] = (float) (s * codes[i]);
        }
        return out;
    }

    /** Codes as a matrix [rows][cols]. */
    public int[][] codeMatrix() {
        int[][] m = new int[rows][cols];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(codes, r * cols, m[r], 0, cols);
        }
        return m;
    }
}
