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
 * <p>Only the upper triangle is accumulated, flat row-major, by rank-k updates over tiles of tokens through
 * {@link DenseKernels#syrkUpper} (dsyrk where native BLAS is loaded); {@link #hessian()} mirrors it.
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
    /** Float64 values per token tile (64 MiB): bounds the converted copy, keeps each rank-k update large. */
    private static final int TILE_VALUES = 1 << 23;

    private final int n;
    /** Flat row-major n×n, upper triangle valid. */
    private final double[] sum;
    private final DenseKernels kernels;
    private long tokens;

    public HessianAccumulator(int n) {
        this(n, DenseKernels.get());
    }

    /** An accumulator whose rank-k updates run on the given kernels. */
    public HessianAccumulator(int n, DenseKernels kernels) {
        if (n < 1) {
            throw new IllegalArgumentException("dimension must be ≥ 1, got " + n);
        }
        this.n = n;
        this.sum = new double[Dense.checkedSize(n, n)];
        this.kernels = kernels;
    }

    public int dim() {
        return n;
    }

    public long tokens() {
        return tokens;
    }

    /** Tokens per rank-k update. */
    private int tileTokens() {
        return Math.max(16, Math.min(4096, TILE_VALUES / n));
    }

    /** Adds the rows of X [tokens][n] (float32). */
    public HessianAccumulator add(float[][] x) {
        int tile = tileTokens();
        double[] buf = new double[Math.min(tile, x.length) * n];
        for (int t0 = 0; t0 < x.length; t0 += tile) {
            int t1 = Math.min(x.length, t0 + tile);
            for (int t = t0; t < t1; t++) {
                float[] row = x[t];
                checkRow(row == null ? -1 : row.length, t);
                int off = (t - t0) * n;
                for (int j = 0; j < n; j++) {
                    float v = row[j];
                    if (!Float.isFinite(v)) {
                        throw nonFinite(t, j, v);
                    }
                    buf[off + j] = v;
                }
            }
            addTile(buf, t1 - t0);
        }
        return this;
    }

    /**
     * Adds the first {@code tokens} rows of X given flat and row-major ({@code x[t·n + j]}, float32) as ONE rank-k
     * update: the caller sizes the tile (the Spark stage's fixed update size is what keeps its bytes independent of
     * partitioning), and the float64 copy is {@code 8·tokens·n} bytes.
     */
    public HessianAccumulator add(float[] x, int tokens) {
        if (tokens < 0 || (long) tokens * n > x.length) {
            throw new IllegalArgumentException("activation tile of " + x.length + " values holds no " + tokens + " tokens × " + n);
        }
        if (tokens == 0) {
            return this;
        }
        double[] buf = new double[tokens * n];
        for (int i = 0; i < buf.length; i++) {
            float v = x[i];
            if (!Float.isFinite(v)) {
                throw nonFinite(i / n, i % n, v);
            }
            buf[i] = v;
        }
        addTile(buf, tokens);
        return this;
    }

    /** Adds the rows of X [tokens][n] (float64). */
    public HessianAccumulator add(double[][] x) {
        int tile = tileTokens();
        double[] buf = new double[Math.min(tile, x.length) * n];
        for (int t0 = 0; t0 < x.length; t0 += tile) {
            int t1 = Math.min(x.length, t0 + tile);
            for (int t = t0; t < t1; t++) {
                double[] row = x[t];
                checkRow(row == null ? -1 : row.length, t);
                for (int j = 0; j < n; j++) {
                    if (!Double.isFinite(row[j])) {
                        throw nonFinite(t, j, row[j]);
                    }
                }
                System.arraycopy(row, 0, buf, (t - t0) * n, n);
            }
            addTile(buf, t1 - t0);
        }
        return this;
    }

    private void checkRow(int len, int t) {
        if (len != n) {
            throw new BadInputException("activation row " + t + " has " + len + " values, the Hessian is " + n + "x" + n);
        }
    }

    private static BadInputException nonFinite(int t, int j, double v) {
        return new BadInputException("activation row " + t + " column " + j + " is " + v);
    }

    /** The first {@code t} rows of {@code x} (flat, row-major, n per row), already checked, into the sum. */
    private void addTile(double[] x, int t) {
        kernels.syrkUpper(n, t, 1.0, x, 0, n, sum, 0, n);
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
            for (int j = i * n + i; j < (i + 1) * n; j++) {
                sum[j] += other.sum[j];
            }
        }
        tokens += other.tokens;
        return this;
    }

    /** Entry {@code (i, j)} of Σ XᵀX (symmetric: read from the stored upper triangle), without copying the matrix. */
    public double get(int i, int j) {
        if (i < 0 || j < 0 || i >= n || j >= n) {
            throw new IndexOutOfBoundsException("entry (" + i + ", " + j + ") of a " + n + "x" + n + " Hessian");
        }
        return i <= j ? sum[i * n + j] : sum[j * n + i];
    }

    /** Σ XᵀX, full symmetric copy (normalisation "sum"). */
    public double[][] hessian() {
        double[][] h = new double[n][n];
        for (int i = 0; i < n; i++) {
            System.arraycopy(sum, i * n + i, h[i], i, n - i);
        }
        // mirror in square tiles, so that both the reads and the strided writes stay in cache
        int tile = 64;
        for (int i0 = 0; i0 < n; i0 += tile) {
            for (int j0 = i0; j0 < n; j0 += tile) {
                for (int i = i0; i < Math.min(n, i0 + tile); i++) {
                    double[] hi = h[i];
                    for (int j = Math.max(j0, i + 1); j < Math.min(n, j0 + tile); j++) {
                        h[j][i] = hi[j];
                    }
                }
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
                buf.putDouble(sum[i * n + j]);
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
                acc.sum[i * n + j] = buf.getDouble();
            }
        }
        return acc;
    }
}
