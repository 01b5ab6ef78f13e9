package org.babaiquant.gpu;

import org.babaiquant.serving.ServingKernels;
import org.babaiquant.serving.TiledLayer;

import java.util.ArrayList;
import java.util.List;

/**
 * A {@link TiledLayer} resident on one GPU, multiplied by {@code gemv_tc.cu}: {@code gemv_tc_prep_x} (x to fp16 hi/lo
 * in the permuted input order), {@code gemv_tc_b<bits>_n<batch>} (the compile-time batch is the smallest of 1, 2, 4, 8,
 * 16 that holds the request; the extra columns are zero), {@code gemv_tc_finish} (splits in order, SSQR outliers).
 * Its arithmetic and reduction order are {@link TiledLayer#gemv}'s, with {@link TiledLayer#defaultSplits()} splits.
 * Device calls go through the owning {@link CudaBackend}'s lock, like every other device call.
 */
public final class TiledLinear implements ServingKernels.Linear {
    private final CudaBackend backend;
    private final TiledLayer layer;
    private final int splits;
    private final List<DeviceBuffer> buffers = new ArrayList<>();
    private final DeviceBuffer words;
    private final DeviceBuffer perm;
    private final DeviceBuffer tileGroup;
    private final DeviceBuffer scales;
    private final DeviceBuffer zeros;
    private final DeviceBuffer rowPtr;
    private final DeviceBuffer col;
    private final DeviceBuffer offset;
    private final DeviceBuffer x;
    private final DeviceBuffer exps;
    private final DeviceBuffer xh;
    private final DeviceBuffer xl;
    private final DeviceBuffer partial;
    private final DeviceBuffer y;
    /** Bytes a product reads from the weights (codes, scales, zero points, outliers): its memory-traffic floor. */
    public final long weightBytes;
    private boolean closed;

    TiledLinear(CudaBackend backend, TiledLayer layer) {
        this.backend = backend;
        this.layer = layer;
        this.splits = layer.defaultSplits();
        CudaDevice d = backend.device;
        int max = TiledLayer.MAX_BATCH;
        boolean ok = false;
        synchronized (backend) {
            try {
                words = keep(DeviceBuffer.ints(d, layer.words().length, "tiled codes"));
                words.upload(layer.words(), layer.words().length);
                perm = keep(DeviceBuffer.ints(d, layer.perm().length, "input permutation"));
                perm.upload(layer.perm(), layer.perm().length);
                tileGroup = keep(DeviceBuffer.ints(d, layer.tileGroup().length, "tile groups"));
                tileGroup.upload(layer.tileGroup(), layer.tileGroup().length);
                scales = keep(DeviceBuffer.alloc(d, 2L * layer.scales().length, "scales"));
                scales.upload(layer.scales(), layer.scales().length);
                zeros = keep(DeviceBuffer.alloc(d, layer.zeros().length, "zero points"));
                zeros.upload(layer.zeros(), 0, layer.zeros().length);
                long wb = 4L * layer.words().length + 2L * layer.scales().length + layer.zeros().length
                        + 4L * layer.tileGroup().length;
                if (layer.rowPtr() != null) {
                    rowPtr = keep(DeviceBuffer.ints(d, layer.rowPtr().length, "outlier row pointers"));
                    rowPtr.upload(layer.rowPtr(), layer.rowPtr().length);
                    int nnz = Math.max(1, layer.col().length);
                    col = keep(DeviceBuffer.ints(d, nnz, "outlier columns"));
                    offset = keep(DeviceBuffer.ints(d, nnz, "outlier offsets"));
                    if (layer.col().length > 0) {
                        col.upload(layer.col(), layer.col().length);
                        offset.upload(layer.offset(), layer.offset().length);
                    }
                    wb += 4L * layer.rowPtr().length + 8L * layer.col().length;
                } else {
                    rowPtr = null;
                    col = null;
                    offset = null;
                }
                weightBytes = wb;
                x = keep(DeviceBuffer.floats(d, (long) max * layer.in(), "x"));
                exps = keep(DeviceBuffer.ints(d, max, "x scale exponents"));
                xh = keep(DeviceBuffer.alloc(d, 2L * max * layer.kPad(), "x hi"));
                xl = keep(DeviceBuffer.alloc(d, 2L * max * layer.kPad(), "x lo"));
                partial = keep(DeviceBuffer.floats(d, (long) splits * max * layer.out(), "partial sums"));
                y = keep(DeviceBuffer.floats(d, (long) max * layer.out(), "y"));
                ok = true;
            } finally {
                if (!ok) {
                    buffers.forEach(DeviceBuffer::close);
                }
            }
        }
    }

    private DeviceBuffer keep(DeviceBuffer b) {
        buffers.add(b);
        return b;
    }

    public TiledLayer layer() {
        return layer;
    }

    public int splits() {
        return splits;
    }

    @Override
    public int in() {
        return layer.in();
    }

    @Override
    public int out() {
        return layer.out();
    }

    /** The compiled batch that holds {@code batch} rows: 1, 2, 4, 8 or 16. */
    static int compiledBatch(int batch) {
        return batch <= 1 ? 1 : batch <= 2 ? 2 : batch <= 4 ? 4 : batch <= 8 ? 8 : 16;
    }

    /** {@code y = X·Wᵀ} for {@code batch} (1..16) rows. */
    @Override
    public float[] apply(float[] xs, int batch) {
        check(xs, batch);
        synchronized (backend) {
            int nb = upload(xs, batch);
            launch(nb);
            float[] all = new float[nb * out()];
            y.download(all, (long) nb * out());
            return java.util.Arrays.copyOf(all, batch * out());
        }
    }

    private void check(float[] xs, int batch) {
        if (batch < 1 || batch > TiledLayer.MAX_BATCH || xs.length != (long) batch * in()) {
            throw new IllegalArgumentException("x has " + xs.length + " values for batch " + batch + " × in " + in()
                    + " (batch must be in 1.." + TiledLayer.MAX_BATCH + ")");
        }
    }

    /**
     * Uploads x and its per-row scale exponents ({@link TiledLayer#exponents}); rows batch..nb−1 (nb the compiled
     * batch) are zero, their outputs computed and dropped. Returns nb.
     */
    private int upload(float[] xs, int batch) {
        int nb = compiledBatch(batch);
        x.upload(xs, (long) batch * in(), 0);
        if (nb > batch) {
            x.upload(new float[(nb - batch) * in()], (long) (nb - batch) * in(), 4L * batch * in());
        }
        exps.upload(java.util.Arrays.copyOf(TiledLayer.exponents(xs, batch, in()), nb), nb);
        return nb;
    }

    /** The three kernels of one product on the x already on the device (no transfers, no synchronisation). */
    void launch(int nb) {
        CudaDevice d = backend.device;
        d.launch("gemv_tc_prep_x", (layer.kPad() + 255) / 256, nb, 256, 0, x, perm, exps, layer.in(), layer.kPad(), xh, xl);
        d.launch("gemv_tc_b" + layer.bits() + "_n" + nb, (layer.outTiles() + 3) / 4, splits, 128, 0,
                words, tileGroup, scales, zeros, xh, xl, partial, layer.out(), layer.outPad(), layer.kPad(), splits);
        d.launch("gemv_tc_finish", (layer.out() + 255) / 256, 1, 256, 0, partial, splits, nb, layer.out(), y, rowPtr, col,
                offset, scales, layer.outPad(), layer.groupSize(), x, layer.in(), exps);
    }

    /** Mean GPU time of one product over {@code reps} (x uploaded once, CUDA events), seconds. */
    public double time(float[] xs, int batch, int reps) {
        check(xs, batch);
        synchronized (backend) {
            int nb = upload(xs, batch);
            launch(nb);
            CudaDevice.Timer t = backend.device.new Timer();
            try {
                t.start();
                for (int i = 0; i < reps; i++) {
                    launch(nb);
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
            throw new IllegalStateException("tiled linear layer closed twice");
        }
        closed = true;
        synchronized (backend) {
            buffers.forEach(DeviceBuffer::close);
        }
    }
}
