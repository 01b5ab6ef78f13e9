package org.babaiquant.gpu;

import java.util.ArrayList;
import java.util.List;

/**
 * {@link SweepKernels} on the GPU (solver.cu). All buffers are allocated by {@link #setFactor}/{@link #setRows} and
 * freed by {@link #close}; W, the codes and E stay on the device for the whole sweep, only the results come back.
 * With {@code timeUpdates} every update is bracketed by CUDA events, for the benchmark's GFLOP/s.
 */
final class CudaSweep implements SweepKernels {
    private static final int STRIP_THREADS = 64;
    private static final int GEMM_TILE = 64;

    private final CudaDevice dev;
    private final boolean timeUpdates;
    private final List<CudaDevice.Timer> timers = new ArrayList<>();
    private final List<DeviceBuffer> rowBuffers = new ArrayList<>();
    private DeviceBuffer u;
    private DeviceBuffer groupOf;
    private DeviceBuffer w;
    private DeviceBuffer codes;
    private DeviceBuffer e;
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

    CudaSweep(CudaDevice dev, boolean timeUpdates) {
        this.dev = dev;
        this.timeUpdates = timeUpdates;
    }

    @Override
    public void setFactor(double[] uHost, int n, int[] groupOfHost, int bs, boolean clip, int maxq) {
        this.n = n;
        this.bs = bs;
        this.clip = clip;
        this.maxq = maxq;
        u = DeviceBuffer.doubles(dev, (long) n * n, "U " + n + "x" + n);
        u.upload(uHost, (long) n * n);
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
        codes = keep(DeviceBuffer.ints(dev, mn, "codes"));
        e = keep(DeviceBuffer.doubles(dev, (long) m * bs, "E " + m + "x" + bs));
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
        dev.launch("gptq_strip", (m + STRIP_THREADS - 1) / STRIP_THREADS, 1, STRIP_THREADS, 0,
                w, codes, n, e, bs, u, n, scale, zero, groups, groupOf, m, i1, c1, width, clip ? 1 : 0, maxq,
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
        dev.launch("dgemm_sub", (nc + GEMM_TILE - 1) / GEMM_TILE, (m + GEMM_TILE - 1) / GEMM_TILE, 256, 0,
                m, nc, k, e.at(c1 - i1, 8), bs, u.at((long) c1 * n + j0, 8), n, w.at(j0, 8), n);
        if (t != null) {
            t.stop();
        }
    }

    @Override
    public void download(double[] wp, int[] codesOut, double[] lossOut, double[] boundOut, int[] clippedOut) {
        dev.synchronize("GPTQ sweep");
        long mn = (long) m * n;
        w.download(wp, mn);
        codes.download(codesOut, mn);
        loss.download(lossOut, m);
        bound.download(boundOut, m);
        clipped.download(clippedOut, m);
        for (CudaDevice.Timer t : timers) {
            updateMillis += t.millis();
            t.destroy();
        }
        timers.clear();
    }

    /** GPU time spent in updates so far (only with {@code timeUpdates}). */
    double updateSeconds() {
        return updateMillis / 1e3;
    }

    @Override
    public void close() {
        rowBuffers.forEach(DeviceBuffer::close);
        rowBuffers.clear();
        if (u != null) {
            u.close();
            u = null;
        }
        if (groupOf != null) {
            groupOf.close();
            groupOf = null;
        }
        timers.forEach(CudaDevice.Timer::destroy);
        timers.clear();
    }
}
