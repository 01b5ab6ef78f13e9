package org.babaiquant.core;

import org.babaiquant.BadInputException;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The sum {@code H = Σ_t x_t x_tᵀ = XᵀX} over calibration tokens and their count, accumulated in float64 from
 * float32 (or float64) inputs. A mergeable value, like MLlib's Gramian: partial sums from different shards add up
 * exactly to the whole (up to float64 summation order), which is why it is never a running mean. The mean
 * {@code H/N} (GPTQ's normalisation, up to its factor 2) is derived on demand and recorded as such by callers.
 *
 * <p>Only the upper triangle is accumulated (a rank-k update through {@link Dense#gemm}); {@link #hessian()} mirrors it.
 *
 * <h2>Binary layout (version 1), little-endian</h2>
 * <pre>
 *  offset  size            field
 *  0       4               magic 0x42 0x51 0x48 0x53 ("BQHS")
 *  4       2               format version (uint16) = 1
 *  6       2               flags (uint16) = 0, reserved
 *  8       4               n, the dimension (int32, ≥ 1)
 *  12      8               token count N (int64, ≥ 0)
 *  20      8·n(n+1)/2      upper triangle of Σ XᵀX, row-major: H[0][0..n), H[1][1..n), …, H[n-1][n-1] (float64)
 * </pre>
 */
public final class HessianAccumulator {
    public static final int MAGIC = 0x53485142; // "BQHS" read as a little-endian int
    public static final int VERSION = 1;
    private static final int HEADER = 20;
    /** Tokens per rank-k update: bounds the transposed copy at 256·n doubles. */
    private static final int TOKEN_TILE = 256;

    private final int n;
    /** Upper triangle valid. */
    private final double[][] sum;
    private long tokens;

    public HessianAccumulator(int n) {
        if (n < 1) {
            throw new IllegalArgumentException("dimension must be ≥ 1, got " + n);
        }
        this.n = n;
        this.sum = new double[n][n];
    }

    public int dim() {
        return n;
    }

    public long tokens() {
        return tokens;
    }

    /** Adds the rows of X [tokens][n] (float32). */
    public HessianAccumulator add(float[][] x) {
        for (int t0 = 0; t0 < x.length; t0 += TOKEN_TILE) {
            int t1 = Math.min(x.length, t0 + TOKEN_TILE);
            double[][] tile = new double[t1 - t0][];
            for (int t = t0; t < t1; t++) {
                float[] row = x[t];
                checkRow(row == null ? -1 : row.length, t);
                double[] d = new double[n];
                for (int j = 0; j < n; j++) {
                    d[j] = row[j];
                }
                tile[t - t0] = d;
            }
            addTile(tile, t0);
        }
        return this;
    }

    /** Adds the rows of X [tokens][n] (float64). */
    public HessianAccumulator add(double[][] x) {
        for (int t0 = 0; t0 < x.length; t0 += TOKEN_TILE) {
            int t1 = Math.min(x.length, t0 + TOKEN_TILE);
            double[][] tile = new double[t1 - t0][];
            for (int t = t0; t < t1; t++) {
                checkRow(x[t] == null ? -1 : x[t].length, t);
                tile[t - t0] = x[t];
            }
            addTile(tile, t0);
        }
        return this;
    }

    private void checkRow(int len, int t) {
        if (len != n) {
            throw new BadInputException("activation row " + t + " has " + len + " values, the Hessian is " + n + "x" + n);
        }
    }

    private void addTile(double[][] x, int firstRow) {
        int t = x.length;
        double[][] xt = new double[n][t];
        for (int i = 0; i < t; i++) {
            double[] row = x[i];
            for (int j = 0; j < n; j++) {
                double v = row[j];
                if (!Double.isFinite(v)) {
                    throw new BadInputException("activation row " + (firstRow + i) + " column " + j + " is " + v);
                }
                xt[j][i] = v;
            }
        }
        Dense.gemm(1.0, sum, 0, 0, xt, 0, 0, x, 0, 0, n, n, t, Dense.Part.UPPER);
        tokens += t;
    }

    /** Adds another partial sum into this one. */
    public HessianAccumulator merge(HessianAccumulator other) {
        if (other == this) {
            throw new IllegalArgumentException("cannot merge a Hessian accumulator with itself");
        }
        if (other.n != n) {
            throw new IllegalArgumentException("cannot merge a " + other.n + "x" + other.n + " Hessian into a " + n + "x" + n + " one");
        }
        for (int i = 0; i < n; i++) {
            double[] a = sum[i];
            double[] b = other.sum[i];
            for (int j = i; j < n; j++) {
                a[j] += b[j];
            }
        }
        tokens += other.tokens;
        return this;
    }

    /** Σ XᵀX, full symmetric copy (normalisation "sum"). */
    public double[][] hessian() {
        double[][] h = new double[n][n];
        for (int i = 0; i < n; i++) {
            for (int j = i; j < n; j++) {
                h[i][j] = sum[i][j];
                h[j][i] = sum[i][j];
            }
        }
        return h;
    }

    /** Σ XᵀX / N (normalisation "mean"); GPTQ's codes do not depend on this scaling, only the loss units do. */
    public double[][] mean() {
        if (tokens == 0) {
            throw new IllegalStateException("no tokens accumulated");
        }
        double[][] h = hessian();
        for (double[] row : h) {
            for (int j = 0; j < n; j++) {
                row[j] /= tokens;
            }
        }
        return h;
    }

    public byte[] toBytes() {
        long size = HEADER + 8L * n * (n + 1) / 2;
        if (size > Integer.MAX_VALUE - 8) {
            throw new IllegalStateException("a " + n + "x" + n + " Hessian does not fit one byte array; store it in blocks");
        }
        ByteBuffer buf = ByteBuffer.allocate((int) size).order(ByteOrder.LITTLE_ENDIAN);
        buf.putInt(MAGIC).putShort((short) VERSION).putShort((short) 0).putInt(n).putLong(tokens);
        for (int i = 0; i < n; i++) {
            for (int j = i; j < n; j++) {
                buf.putDouble(sum[i][j]);
            }
        }
        return buf.array();
    }

    public static HessianAccumulator fromBytes(byte[] bytes) {
        ByteBuffer buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        if (bytes.length < HEADER || buf.getInt() != MAGIC) {
            throw new BadInputException("not a babai-quant Hessian (bad magic or shorter than its " + HEADER + "-byte header)");
        }
        int version = Short.toUnsignedInt(buf.getShort());
        if (version != VERSION) {
            throw new BadInputException("Hessian format version " + version + " is not supported by this build (it reads "
                    + VERSION + "): recompute the Hessian with this version, or use the babai-quant that wrote it");
        }
        buf.getShort();
        int n = buf.getInt();
        long tokens = buf.getLong();
        if (n < 1 || tokens < 0 || bytes.length != HEADER + 8L * n * (n + 1) / 2) {
            throw new BadInputException("corrupt Hessian: n=" + n + ", tokens=" + tokens + ", " + bytes.length + " bytes");
        }
        HessianAccumulator acc = new HessianAccumulator(n);
        acc.tokens = tokens;
        for (int i = 0; i < n; i++) {
            for (int j = i; j < n; j++) {
                acc.sum[i][j] = buf.getDouble();
            }
        }
        return acc;
    }
}
