package org.babaiquant.gpu;

import org.babaiquant.core.DampedFactor;

import java.util.ArrayList;
import java.util.List;

/**
 * {@link SweepKernels} on the GPU (solver.cu). All buffers are allocated by {@link #setFactor}/{@link #setRows} and
 * freed by {@link #close}; W, A, Δ and the codes stay on the device for the whole sweep, only the codes (one byte
 * each when clipping) and the per-row loss, bound and clipped count come back. The lazy updates run on the tensor cores
 * ({@code dgemm_tc}, dmma_f64.cuh) or, with {@code exactUpdates}, on {@code dgemm_add}, whose summation order
 * {@link HostSweep} follows: that path must equal the host twin bit for bit. With {@code timeUpdates} every update is
 * bracketed by CUDA events, for the benchmark's GFLOP/s.
 */
final class CudaSweep implements SweepKernels {
    private static final int BLOCK_THREADS = 128;
    /** Rows per block of gptq_block: 4 warps × 2 rows (solver.cu SWEEP_WARPS × SWEEP_ROWS). */
    private static final int BLOCK_ROWS = 8;
    private static final int GEMM_TILE = 64;

    private final CudaDevice dev;
    private final boolean timeUpdates;
    private final boolean exactUpdates;
    private final List<CudaDevice.Timer> timers = new ArrayList<>();
    private final List<DeviceBuffer> rowBuffers = new ArrayList<>();
    private DeviceBuffer ut;
    private DeviceBuffer groupOf;
    private DeviceBuffer w;
    private DeviceBuffer a;
    private DeviceBuffer codes;
    private DeviceBuffer delta;
    private DeviceBuffer scale;
    private DeviceBuffer zero;
    private DeviceBuffer loss;
    private DeviceBuffer bound;
    private DeviceBuffer clipped;
    private int n;
    private int bs;
    private boolean clip;
    private int maxq;
    private int m;
    private int groups;
    private double updateMillis;

    CudaSweep(CudaDevice dev, boolean timeUpdates, boolean exactUpdates) {
        this.dev = dev;
        this.timeUpdates = timeUpdates;
        this.exactUpdates = exactUpdates;
    }

    @Override
    public void setFactor(double[] utHost, int n, int[] groupOfHost, int bs, boolean clip, int maxq) {
        DeviceBuffer u = DeviceBuffer.doubles(dev, (long) n * n, "factor " + n + "x" + n);
        u.upload(utHost, (long) n * n);
        adoptFactor(u, n, groupOfHost, bs, clip, maxq);
    }

    @Override
    public Factor factor(double[] h, int n, int[] perm, double percdamp, int maxTries, int[] groupOf, int bs,
                         boolean clip, int maxq) {
        double meanDiag = 0; // summed in the original order, as DampedFactor
        for (int i = 0; i < n; i++) {
            meanDiag += h[i * n + i];
        }
        meanDiag /= n;
        long nn = (long) n * n;
        DeviceBuffer u = DeviceBuffer.doubles(dev, nn, "factor " + n + "x" + n);
        try (DeviceBuffer hd = DeviceBuffer.doubles(dev, nn, "H " + n + "x" + n);
             DeviceBuffer a = DeviceBuffer.doubles(dev, nn, "Cholesky work " + n + "x" + n);
             DeviceBuffer pd = DeviceBuffer.ints(dev, n, "column order");
             DeviceBuffer flag = DeviceBuffer.ints(dev, 1, "pivot flag");
             DeviceBuffer diag = DeviceBuffer.doubles(dev, n, "factor diagonal")) {
            hd.upload(h, nn);
            pd.upload(perm, n);
            int[] failed = new int[1];
            DampedFactor.Damping d = DampedFactor.escalate(meanDiag, percdamp, maxTries, (lambda, attempt) -> {
                flag.zero();
                DeviceCholesky.run(dev, hd, n, pd, lambda, a, flag);
                flag.download(failed, 1);
                return failed[0] == 0;
            });
            DeviceCholesky.reverse(dev, a, n, u, diag);
            double[] dg = new double[n];
            diag.download(dg, n);
            double traceD = 0; // as DampedFactor: Σ_k Ũ_kk² in k order
            for (int k = 0; k < n; k++) {
                traceD += dg[k] * dg[k];
            }
            adoptFactor(u, n, groupOf, bs, clip, maxq);
            return new Factor(d, traceD);
        } catch (RuntimeException | Error e) {
            u.close();
            throw e;
        }
    }

    private void adoptFactor(DeviceBuffer u, int n, int[] groupOfHost, int bs, boolean clip, int maxq) {
        this.n = n;
        this.bs = bs;
        this.clip = clip;
        this.maxq = maxq;
        ut = u;
        groupOf = DeviceBuffer.ints(dev, n, "group of column");
        groupOf.upload(groupOfHost, n);
    }

    @Override
    public void setRows(double[] wp, int m, double[] scaleHost, double[] zeroHost, int groups) {
        rowBuffers.forEach(DeviceBuffer::close);
        rowBuffers.clear();
        this.m = m;
        this.groups = groups;
        long mn = (long) m * n;
        w = keep(DeviceBuffer.doubles(dev, mn, "W " + m + "x" + n));
        w.upload(wp, mn);
        a = keep(DeviceBuffer.doubles(dev, mn, "accumulators " + m + "x" + n));
        a.zero();
        codes = keep(DeviceBuffer.alloc(dev, mn * SweepKernels.codeBytes(clip), "codes"));
        delta = keep(DeviceBuffer.doubles(dev, (long) m * bs, "residuals " + m + "x" + bs));
        scale = keep(DeviceBuffer.doubles(dev, (long) m * groups, "scales"));
        scale.upload(scaleHost, (long) m * groups);
        zero = keep(DeviceBuffer.doubles(dev, (long) m * groups, "zeros"));
        zero.upload(zeroHost, (long) m * groups);
        loss = keep(DeviceBuffer.doubles(dev, m, "row loss"));
        loss.zero();
        bound = keep(DeviceBuffer.doubles(dev, m, "row bound"));
        bound.zero();
        clipped = keep(DeviceBuffer.ints(dev, m, "row clipped"));
        clipped.zero();
    }

    private DeviceBuffer keep(DeviceBuffer b) {
        rowBuffers.add(b);
        return b;
    }

    @Override
    public void strip(int i1, int c1, int width) {
        dev.launch("gptq_block", (m + BLOCK_ROWS - 1) / BLOCK_ROWS, 1, BLOCK_THREADS, 0,
                w, a, codes, n, delta, bs, ut, n, scale, zero, groups, groupOf, m, i1, c1, width, clip ? 1 : 0, maxq,
                loss, bound, clipped);
    }

    @Override
    public void update(int i1, int c1, int k, int j0, int j1) {
        CudaDevice.Timer t = null;
        if (timeUpdates) {
            t = dev.new Timer();
            timers.add(t);
            t.start();
        }
        int nc = j1 - j0;
        int gx = (nc + GEMM_TILE - 1) / GEMM_TILE;
        int gy = (m + GEMM_TILE - 1) / GEMM_TILE;
        if (exactUpdates) {
            dev.launch("dgemm_add", gx, gy, 256, 0,
                    m, nc, k, delta.at(c1 - i1, 8), bs, ut.at((long) c1 * n + j0, 8), n, a.at(j0, 8), n);
        } else {
            dev.launch("dgemm_tc", gx, gy, BLOCK_THREADS, 0, 0, 0, 0, m, nc, k, 1.0,
                    delta.at(c1 - i1, 8), (long) bs, ut.at((long) c1 * n + j0, 8), (long) n, a.at(j0, 8), (long) n);
        }
        if (t != null) {
            t.stop();
        }
    }

    @Override
    public void download(byte[] codesOut, double[] lossOut, double[] boundOut, int[] clippedOut) {
        dev.synchronize("GPTQ sweep");
        codes.download(codesOut, (long) m * n * SweepKernels.codeBytes(clip));
        loss.download(lossOut, m);
        bound.download(boundOut, m);
        clipped.download(clippedOut, m);
        for (CudaDevice.Timer t : timers) {
            updateMillis += t.millis();
            t.destroy();
        }
        timers.clear();
    }

    /** The factor Ũ as the kernels hold it (row-major n × n), for the parity check against core's factor. */
    double[] factorOnHost() {
        double[] u = new double[Math.multiplyExact(n, n)];
        ut.download(u, (long) n * n);
        return u;
    }

    /** GPU time spent in updates so far (only with {@code timeUpdates}). */
    double updateSeconds() {
        return updateMillis / 1e3;
    }

    @Override
    public void close() {
        rowBuffers.forEach(DeviceBuffer::close);
        rowBuffers.clear();
        if (ut != null) {
            ut.close();
            ut = null;
        }
        if (groupOf != null) {
            groupOf.close();
            groupOf = null;
        }
        timers.forEach(CudaDevice.Timer::destroy);
        timers.clear();
    }
}
