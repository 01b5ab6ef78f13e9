package org.babaiquant.nonclip;

import org.babaiquant.core.Half;
import org.babaiquant.core.QuantGrid;

/**
 * One weight matrix in SSQR form, {@code q = diag(s)·(z − zero) + ξ} per output row: dense low-bit codes z in
 * {@code [0, maxq]} on a grid with one fp16 scale and one integer zero point per (row, group), and a sparse matrix ξ
 * (CSR) of the weights whose unclipped lattice code fell outside {@code [0, maxq]}. Raw arrays inside; the binary
 * layout belongs to {@link SsqrFormat}.
 *
 * <p><b>What ξ holds.</b> For an outlier at (r, j) the dense code is the zero point (so the dense part contributes
 * exactly 0) and ξ stores the integer {@code c − zero}, c being the unclipped lattice code. Its value is
 * {@code s·(c − zero)}, the dequantized lattice point, computed by the same formula as every other weight. Storing the
 * integer rather than an fp16 value is what makes the round trip exact: the lattice value {@code s·(c − zero)} needs
 * 11 + log2|c − zero| significant bits, more than fp16's 11, while the integer fits an int16 in the same 16 bits
 * (int32 when a code is farther than 32767 from its zero point, flagged in the file).
 *
 * @param scale  fp16 bits of the scales, {@code [rows·groups]} row-major
 * @param zero   integer zero points in {@code [0, maxq]}, {@code [rows·groups]}
 * @param codes  dense codes in {@code [0, maxq]}, {@code [rows·cols]} row-major; the zero point at outliers
 * @param rowPtr CSR row pointers {@code [rows+1]}: row r's outliers are entries {@code rowPtr[r] … rowPtr[r+1]−1}
 * @param col    column of each outlier, strictly increasing within a row
 * @param offset {@code c − zero} of each outlier, outside {@code [−zero, maxq − zero]}
 */
public record SsqrLayer(int bits, int groupSize, int rows, int cols, short[] scale, int[] zero, int[] codes,
                        int[] rowPtr, int[] col, int[] offset) {

    public int groups() {
        return (cols + groupSize - 1) / groupSize;
    }

    public int maxq() {
        return (1 << bits) - 1;
    }

    public int outliers() {
        return rowPtr[rows];
    }

    /** Outliers per weight. */
    public double density() {
        return outliers() / ((double) rows * cols);
    }

    /**
     * Splits lattice codes (unclipped, on {@code grid}, whose scales must be fp16 values) into the dense codes and
     * the outliers.
     */
    public static SsqrLayer fromLattice(int[][] lattice, QuantGrid grid) {
        int rows = grid.rows;
        int cols = grid.cols;
        int groups = grid.groups();
        int maxq = grid.maxq;
        short[] scale = new short[rows * groups];
        int[] zero = new int[rows * groups];
        for (int r = 0; r < rows; r++) {
            for (int g = 0; g < groups; g++) {
                double s = grid.scale[r][g];
                short h = Half.fromFloat((float) s);
                if (Half.toFloat(h) != s) {
                    throw new IllegalArgumentException("scale[" + r + "][" + g + "] = " + s + " is not an fp16 value;"
                            + " SSQR runs GPTQ on fp16-rounded scales so that the stored lattice is the searched one");
                }
                double z = grid.zero[r][g];
                if (z != Math.rint(z) || z < 0 || z > maxq) {
                    throw new IllegalArgumentException("zero[" + r + "][" + g + "] = " + z + " is not an integer in 0.."
                            + maxq);
                }
                scale[r * groups + g] = h;
                zero[r * groups + g] = (int) z;
            }
        }
        int nnz = 0;
        for (int[] row : lattice) {
            for (int c : row) {
                if (c < 0 || c > maxq) {
                    nnz++;
                }
            }
        }
        int[] codes = new int[rows * cols];
        int[] rowPtr = new int[rows + 1];
        int[] col = new int[nnz];
        int[] offset = new int[nnz];
        int k = 0;
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < cols; j++) {
                int c = lattice[r][j];
                int z = zero[r * groups + j / grid.groupSize];
                if (c < 0 || c > maxq) {
                    codes[r * cols + j] = z;
                    col[k] = j;
                    offset[k] = c - z;
                    k++;
                } else {
                    codes[r * cols + j] = c;
                }
            }
            rowPtr[r + 1] = k;
        }
        return new SsqrLayer(grid.bits, grid.groupSize, rows, cols, scale, zero, codes, rowPtr, col, offset);
    }

    /**
     * {@code s·(z − zero)}, or {@code s·(c − zero)} at outliers, in float64 from the exact fp16 scale and rounded once
     * to float32: bit for bit the solver's dequantized lattice point rounded to float32.
     */
    public float[] dequantize() {
        float[] out = new float[rows * cols];
        int groups = groups();
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < cols; j++) {
                int g = r * groups + j / groupSize;
                out[r * cols + j] = (float) ((double) Half.toFloat(scale[g]) * (codes[r * cols + j] - zero[g]));
            }
            for (int k = rowPtr[r]; k < rowPtr[r + 1]; k++) {
                int j = col[k];
                int g = r * groups + j / groupSize;
                out[r * cols + j] = (float) ((double) Half.toFloat(scale[g]) * offset[k]);
            }
        }
        return out;
    }

    /** The unclipped lattice codes [rows][cols]: dense codes with the outliers put back. */
    public int[][] latticeCodes() {
        int[][] m = new int[rows][cols];
        int groups = groups();
        for (int r = 0; r < rows; r++) {
            System.arraycopy(codes, r * cols, m[r], 0, cols);
            for (int k = rowPtr[r]; k < rowPtr[r + 1]; k++) {
                m[r][col[k]] = zero[r * groups + col[k] / groupSize] + offset[k];
            }
        }
        return m;
    }
}
