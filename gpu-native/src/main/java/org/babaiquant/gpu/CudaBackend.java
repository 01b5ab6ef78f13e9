package org.babaiquant.gpu;

import org.babaiquant.core.GptqPacking;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.nonclip.SsqrLayer;
import org.babaiquant.serving.PackedGptq;
import org.babaiquant.serving.ServingKernels;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.logging.Logger;

/**
 * The CUDA backend: Hessian tiles, the GPTQ sweep and the quantized GEMV on one GPU, through JCuda's driver API and
 * the kernels of {@code src/main/cuda}. One instance per device for the life of the JVM ({@link #open}); its methods
 * are synchronized, so tasks sharing a GPU take turns. A {@link CudaException.Recoverable} (out of memory) leaves the
 * device usable and the caller may run the same work on {@link QuantBackend#cpu()}.
 *
 * <p>What runs where: the Hessian and the GEMV entirely on the GPU; for GPTQ, the factorisation (except min-pivot's),
 * the sweep and its lazy updates on the GPU, validation, grid and order on the host (see {@link LatticeSweep});
 * methods RTN and BABAI run core's CPU solver (RTN has no
 * sweep; Babai's direct formulation is the CPU oracle, with the same codes as GPTQ).
 */
public final class CudaBackend implements QuantBackend, ServingKernels {
    private static final Logger LOG = Logger.getLogger(CudaBackend.class.getName());
    /** Largest activation tile staged on the device at once. */
    private static final long STAGE_BYTES = 256L << 20;
    /** Inputs per slice of the GEMV (a block's shared-memory copy of x). */
    private static final int GEMV_SLICE = 1024;

    final CudaDevice device;

    private CudaBackend(CudaDevice device) {
        this.device = device;
    }

    /** One backend per device, so that its synchronized methods really make the tasks sharing a GPU take turns. */
    private static final java.util.Map<CudaDevice, CudaBackend> OPEN = new java.util.HashMap<>();

    /**
     * The backend on a device ordinal / Spark GPU address (null: default), the same instance for every caller of one
     * device (Spark tasks on different threads then serialise on it instead of interleaving their device memory and
     * launches). Requires {@link CudaProbe} available.
     */
    public static CudaBackend open(String deviceAddress) {
        Availability a = CudaProbe.availability();
        if (!a.available()) {
            throw new QuantBackend.UnavailableException("backend cuda is unavailable: " + a.reason(), null);
        }
        CudaDevice d = CudaDevice.open(deviceAddress, CudaProbe.image());
        synchronized (OPEN) {
            return OPEN.computeIfAbsent(d, CudaBackend::new);
        }
    }

    @Override
    public String name() {
        return "cuda";
    }

    @Override
    public String description() {
        return "cuda: " + device + ", " + CudaProbe.image().reason();
    }

    // ---- Hessian --------------------------------------------------------------------------------------------------

    @Override
    public synchronized HessianSum hessian(int n) {
        if (n < 1) {
            throw new IllegalArgumentException("dimension must be ≥ 1, got " + n);
        }
        return new CudaHessianSum(n);
    }

    /**
     * Σ XᵀX in float64 on the device (upper triangle), filled by hessian_dmma.cu: each staged tile is widened to
     * float64 ({@code hessian_widen_*}, exact) and multiplied on the fp64 tensor cores ({@code hessian_dmma}), so every
     * product is exact and only float64 sums round ({@link HessianTwin}'s contract).
     */
    private final class CudaHessianSum implements HessianSum {
        private final int n;
        private final DeviceBuffer sum;
        private DeviceBuffer stage;
        private DeviceBuffer wide;
        private long tokens;

        CudaHessianSum(int n) {
            this.n = n;
            this.sum = DeviceBuffer.doubles(device, (long) n * n, "Hessian " + n + "x" + n);
            boolean ok = false;
            try {
                sum.zero();
                ok = true;
            } finally {
                if (!ok) {
                    sum.close();
                }
            }
        }

        @Override
        public int dim() {
            return n;
        }

        @Override
        public long tokens() {
            return tokens;
        }

        private int tokensPerLaunch(int bytes) {
            return (int) Math.max(1, Math.min(Integer.MAX_VALUE, STAGE_BYTES / ((long) n * bytes)));
        }

        private DeviceBuffer stage(long bytes) {
            if (stage == null || stage.bytes() < bytes) {
                if (stage != null) {
                    stage.close();
                    stage = null;
                }
                stage = DeviceBuffer.alloc(device, bytes, "activation tile");
            }
            return stage;
        }

        @Override
        public void add(float[] x, int count) {
            if (count < 0 || x.length != (long) count * n) {
                throw new IllegalArgumentException("activation tile has " + x.length + " values, expected " + count
                        + " tokens × " + n);
            }
            for (int i = 0; i < x.length; i++) {
                if (!Float.isFinite(x[i])) {
                    throw new org.babaiquant.BadInputException("activation row " + i / n + " column " + i % n
                            + " is " + x[i]);
                }
            }
            synchronized (CudaBackend.this) {
                int per = tokensPerLaunch(4);
                for (int t0 = 0; t0 < count; t0 += per) {
                    int t = Math.min(per, count - t0);
                    DeviceBuffer s = stage((long) Math.min(per, count) * n * 4);
                    float[] tile = t0 == 0 && t == count ? x : java.util.Arrays.copyOfRange(x, t0 * n, (t0 + t) * n);
                    s.upload(tile, (long) t * n, 0);
                    launch("hessian_widen_f32", s, t);
                }
                tokens += count;
            }
        }

        @Override
        public void addRaw(byte[] data, int offset, int count, ActivationType type) {
            long need = (long) count * n * type.bytes;
            if (offset < 0 || count < 0 || offset + need > data.length) {
                throw new IllegalArgumentException("activation tile of " + count + " tokens × " + n + " " + type
                        + " at offset " + offset + " does not fit " + data.length + " bytes");
            }
            checkFinite(data, offset, (long) count * n, type);
            String kernel = switch (type) {
                case F32 -> "hessian_widen_f32";
                case F16 -> "hessian_widen_f16";
                case BF16 -> "hessian_widen_bf16";
            };
            synchronized (CudaBackend.this) {
                int per = tokensPerLaunch(type.bytes);
                for (int t0 = 0; t0 < count; t0 += per) {
                    int t = Math.min(per, count - t0);
                    DeviceBuffer s = stage((long) Math.min(per, count) * n * type.bytes);
                    s.upload(data, offset + t0 * n * type.bytes, (long) t * n * type.bytes);
                    launch(kernel, s, t);
                }
                tokens += count;
            }
        }

        /** Widens t staged rows to float64 with {@code widen}, then adds their XᵀX to the sum. */
        private void launch(String widen, DeviceBuffer x, int t) {
            long count = (long) t * n;
            if (wide == null || wide.bytes() < 8 * count) {
                if (wide != null) {
                    wide.close();
                    wide = null;
                }
                wide = DeviceBuffer.doubles(device, count, "activation tile in float64");
            }
            device.launch(widen, (int) ((count + 255) / 256), 1, 256, 0, x, count, wide);
            int tiles = (n + 63) / 64;
            device.launch("hessian_dmma", tiles * (tiles + 1) / 2, 1, 128, 0, wide, t, n, sum);
        }

        @Override
        public HessianAccumulator toAccumulator() {
            long size = 20 + 8L * n * (n + 1) / 2;
            if (size > Integer.MAX_VALUE - 8) {
                throw new IllegalStateException("a " + n + "x" + n + " Hessian does not fit one byte array");
            }
            double[] h = new double[n * n];
            synchronized (CudaBackend.this) {
                device.synchronize("Hessian accumulation");
                sum.download(h, (long) n * n);
            }
            // HessianAccumulator's documented version-1 layout: header, then the upper triangle row by row
            ByteBuffer b = ByteBuffer.allocate((int) size).order(ByteOrder.LITTLE_ENDIAN);
            b.putInt(HessianAccumulator.MAGIC).putShort((short) HessianAccumulator.VERSION).putShort((short) 0)
                    .putInt(n).putLong(tokens);
            for (int i = 0; i < n; i++) {
                for (int j = i; j < n; j++) {
                    b.putDouble(h[i * n + j]);
                }
            }
            return HessianAccumulator.fromBytes(b.array());
        }

        @Override
        public void close() {
            synchronized (CudaBackend.this) {
                if (stage != null) {
                    stage.close();
                    stage = null;
                }
                if (wide != null) {
                    wide.close();
                    wide = null;
                }
                sum.close();
            }
        }
    }

    /** Refuses Inf/NaN in raw activations, as the CPU path does for float32 (exponent bits all ones). */
    static void checkFinite(byte[] data, int offset, long count, ActivationType type) {
        ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < count; i++) {
            int at = (int) (offset + i * type.bytes);
            boolean bad = switch (type) {
                case F32 -> (b.getInt(at) & 0x7F800000) == 0x7F800000;
                case F16 -> (b.getShort(at) & 0x7C00) == 0x7C00;
                case BF16 -> (b.getShort(at) & 0x7F80) == 0x7F80;
            };
            if (bad) {
                throw new org.babaiquant.BadInputException("activation value " + i + " (" + type + ") is not finite");
            }
        }
    }

    // ---- solver ---------------------------------------------------------------------------------------------------

    @Override
    public synchronized QuantizedLayer quantize(double[][] w, double[][] h, GptqSolver.Options opt,
                                                QuantGrid fixedGrid) {
        if (opt.method() != Method.GPTQ) {
            LOG.fine(() -> "cuda backend: " + opt.method() + " runs on the CPU solver");
            return GptqSolver.quantize(w, h, opt, fixedGrid);
        }
        return LatticeSweep.quantize(w, h, opt, fixedGrid, () -> new CudaSweep(device, false, false), null);
    }

    /** As {@link #quantize}, GPTQ only, with timings (the benchmark). */
    synchronized QuantizedLayer quantizeTimed(double[][] w, double[][] h, GptqSolver.Options opt,
                                              LatticeSweep.Stats[] stats, double[] updateSeconds) {
        CudaSweep[] made = new CudaSweep[1];
        QuantizedLayer q = LatticeSweep.quantize(w, h, opt, null, () -> made[0] = new CudaSweep(device, true, false), stats);
        updateSeconds[0] = made[0].updateSeconds();
        return q;
    }

    // ---- GEMV -----------------------------------------------------------------------------------------------------

    @Override
    public synchronized Linear gptqLinear(PackedGptq p) {
        checkGemvShape(p.bits(), p.groupSize(), p.in(), "GPTQ");
        int out = p.out();
        int groups = p.groups();
        int mask = (1 << p.bits()) - 1;
        int zeroWords = out * p.bits() / 32;
        byte[] zeros = new byte[groups * out];
        for (int g = 0; g < groups; g++) {
            for (int o = 0; o < out; o++) {
                int bit = o * p.bits();
                int v = p.qzeros()[g * zeroWords + (bit >>> 5)] >>> (bit & 31);
                zeros[g * out + o] = (byte) (((v & mask) + (p.zerosV1() ? 1 : 0)) & mask);
            }
        }
        return new CudaLinear(p.bits(), p.groupSize(), p.in(), out, p.qweight(), p.scales(), zeros, null, null, null);
    }

    @Override
    public synchronized Linear ssqrLinear(SsqrLayer l) {
        checkGemvShape(l.bits(), l.groupSize(), l.cols(), "SSQR");
        int rows = l.rows();
        int cols = l.cols();
        int groups = l.groups();
        int[][] codes = new int[rows][cols];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(l.codes(), r * cols, codes[r], 0, cols);
        }
        int[][] qweight = GptqPacking.packQweight(codes, l.bits());
        int[] qw = new int[qweight.length * rows];
        for (int i = 0; i < qweight.length; i++) {
            System.arraycopy(qweight[i], 0, qw, i * rows, rows);
        }
        short[] scales = new short[groups * rows];
        byte[] zeros = new byte[groups * rows];
        for (int r = 0; r < rows; r++) {
            for (int g = 0; g < groups; g++) {
                scales[g * rows + r] = l.scale()[r * groups + g];
                zeros[g * rows + r] = (byte) l.zero()[r * groups + g];
            }
        }
        return new CudaLinear(l.bits(), l.groupSize(), cols, rows, qw, scales, zeros, l.rowPtr(), l.col(), l.offset());
    }

    /**
     * A layer repacked for the tensor-core GEMV ({@code gemv_tc.cu}, batch up to 16, 2/3/4/8 bits, any {@code g_idx}),
     * resident on this device. Not yet what {@link #gptqLinear}/{@link #ssqrLinear} return: those stay on the GEMV
     * measured on the H200 until the GPU check has run this one (gpu-native/README).
     */
    public TiledLinear tiledLinear(org.babaiquant.serving.TiledLayer layer) {
        return new TiledLinear(this, layer);
    }

    /** The shapes the GEMV kernels take: 2/4/8 bits, inputs and groups in whole 32-bit words. */
    private static void checkGemvShape(int bits, int groupSize, int in, String what) {
        if (bits != 2 && bits != 4 && bits != 8) {
            throw new UnsupportedOperationException("CUDA " + what + " GEMV supports 2, 4 and 8 bits, not " + bits
                    + " (3-bit codes cross words); use the CPU backend");
        }
        int per = 32 / bits;
        if (in % per != 0 || groupSize % per != 0) {
            throw new UnsupportedOperationException("CUDA " + what + " GEMV needs the inputs (" + in
                    + ") and the group size (" + groupSize + ") to be multiples of " + per + " at " + bits + " bits");
        }
    }

    /** A layer resident on the device (gemv.cu): codes, scales, zero points, optional CSR outliers, work buffers. */
    final class CudaLinear implements Linear {
        private final int bits;
        private final int groupSize;
        private final int in;
        private final int out;
        private final int slices;
        private final java.util.List<DeviceBuffer> buffers = new java.util.ArrayList<>();
        private final DeviceBuffer qweight;
        private final DeviceBuffer scales;
        private final DeviceBuffer zeros;
        private final DeviceBuffer rowPtr;
        private final DeviceBuffer col;
        private final DeviceBuffer offset;
        private final DeviceBuffer x;
        private final DeviceBuffer partial;
        private final DeviceBuffer y;
        /** Bytes a product must read from the weights: the floor of its memory traffic. */
        final long weightBytes;
        private boolean closed;

        CudaLinear(int bits, int groupSize, int in, int out, int[] qw, short[] sc, byte[] zp, int[] rp, int[] cl,
                   int[] off) {
            this.bits = bits;
            this.groupSize = groupSize;
            this.in = in;
            this.out = out;
            this.slices = (in + GEMV_SLICE - 1) / GEMV_SLICE;
            boolean ok = false;
            try {
                qweight = keep(DeviceBuffer.ints(device, qw.length, "qweight"));
                qweight.upload(qw, qw.length);
                scales = keep(DeviceBuffer.alloc(device, 2L * sc.length, "scales"));
                scales.upload(sc, sc.length);
                zeros = keep(DeviceBuffer.alloc(device, zp.length, "zero points"));
                zeros.upload(zp, 0, zp.length);
                long wb = 4L * qw.length + 2L * sc.length + zp.length;
                if (rp != null) {
                    rowPtr = keep(DeviceBuffer.ints(device, rp.length, "outlier row pointers"));
                    rowPtr.upload(rp, rp.length);
                    int nnz = Math.max(1, cl.length);
                    col = keep(DeviceBuffer.ints(device, nnz, "outlier columns"));
                    offset = keep(DeviceBuffer.ints(device, nnz, "outlier offsets"));
                    if (cl.length > 0) {
                        col.upload(cl, cl.length);
                        offset.upload(off, off.length);
                    }
                    wb += 4L * rp.length + 8L * cl.length;
                } else {
                    rowPtr = null;
                    col = null;
                    offset = null;
                }
                weightBytes = wb;
                x = keep(DeviceBuffer.floats(device, (long) MAX_BATCH * in, "x"));
                partial = keep(DeviceBuffer.floats(device, (long) slices * MAX_BATCH * out, "partial sums"));
                y = keep(DeviceBuffer.floats(device, (long) MAX_BATCH * out, "y"));
                ok = true;
            } finally {
                if (!ok) {
                    buffers.forEach(DeviceBuffer::close);
                }
            }
        }

        private DeviceBuffer keep(DeviceBuffer b) {
            buffers.add(b);
            return b;
        }

        @Override
        public int in() {
            return in;
        }

        @Override
        public int out() {
            return out;
        }

        @Override
        public float[] apply(float[] xs, int batch) {
            ServingKernels.checkBatch(xs, batch, in);
            synchronized (CudaBackend.this) {
                x.upload(xs, (long) batch * in, 0);
                launch(batch);
                float[] ys = new float[batch * out];
                y.download(ys, (long) batch * out);
                return ys;
            }
        }

        /** The two kernels of one product on the x already on the device (no transfers, no synchronisation). */
        void launch(int batch) {
            int groupsPerSlice = GEMV_SLICE / groupSize + 2;
            int shared = 4 * (MAX_BATCH * GEMV_SLICE + batch * groupsPerSlice);
            device.launch("gemv_dense_b" + bits, (out + 255) / 256, slices, 256, shared,
                    qweight, scales, zeros, x, partial, in, out, groupSize, batch, GEMV_SLICE);
            device.launch("gemv_finish", (out + 255) / 256, 1, 256, 0,
                    partial, slices, batch, out, y, rowPtr, col, offset, scales, groupSize, x, in);
        }

        /** Mean GPU time of one product over {@code reps} (x uploaded once, CUDA events), seconds. */
        double time(float[] xs, int batch, int reps) {
            synchronized (CudaBackend.this) {
                x.upload(xs, (long) batch * in, 0);
                launch(batch);
                CudaDevice.Timer t = device.new Timer();
                try {
                    t.start();
                    for (int i = 0; i < reps; i++) {
                        launch(batch);
                    }
                    t.stop();
                    return t.millis() / 1e3 / reps;
                } finally {
                    t.destroy();
                }
            }
        }

        @Override
        public void close() {
            if (closed) {
                throw new IllegalStateException("CUDA linear layer closed twice");
            }
            closed = true;
            synchronized (CudaBackend.this) {
                buffers.forEach(DeviceBuffer::close);
            }
        }
    }
}
