package org.babaiquant.gpu;

import jcuda.Pointer;
import jcuda.Sizeof;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.JCudaDriver;

import java.lang.ref.Cleaner;
import java.util.logging.Logger;

import static org.babaiquant.gpu.CudaException.check;

/**
 * Device memory, owned by try-with-resources: {@link #close()} frees it, closing twice is an error. A {@link Cleaner}
 * only detects and logs a buffer that became unreachable unclosed (it does not free it: the driver call would run on
 * the cleaner's thread without the context, and hiding the leak would hide the bug).
 */
public final class DeviceBuffer implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();
    private static final Logger LOG = Logger.getLogger(DeviceBuffer.class.getName());

    private final CudaDevice device;
    private final CUdeviceptr ptr = new CUdeviceptr();
    private final long bytes;
    private final LeakCheck leak;
    private final Cleaner.Cleanable cleanable;

    /** What the cleaner sees: it must not reference the buffer itself. */
    private static final class LeakCheck implements Runnable {
        private final String what;
        private volatile boolean closed;

        LeakCheck(String what) {
            this.what = what;
        }

        @Override
        public void run() {
            if (!closed) {
                LOG.warning("device buffer leaked (never closed): " + what);
            }
        }
    }

    private DeviceBuffer(CudaDevice device, long bytes, String what) {
        if (bytes <= 0) {
            throw new IllegalArgumentException("device buffer " + what + " of " + bytes + " bytes");
        }
        this.device = device;
        this.bytes = bytes;
        device.makeCurrent();
        check(JCudaDriver.cuMemAlloc(ptr, bytes), "cuMemAlloc(" + bytes + " bytes for " + what + ")");
        this.leak = new LeakCheck(what + ", " + bytes + " bytes on GPU " + device.ordinal);
        this.cleanable = CLEANER.register(this, leak);
    }

    static DeviceBuffer alloc(CudaDevice device, long bytes, String what) {
        return new DeviceBuffer(device, bytes, what);
    }

    static DeviceBuffer doubles(CudaDevice device, long count, String what) {
        return alloc(device, count * Sizeof.DOUBLE, what);
    }

    static DeviceBuffer floats(CudaDevice device, long count, String what) {
        return alloc(device, count * Sizeof.FLOAT, what);
    }

    static DeviceBuffer ints(CudaDevice device, long count, String what) {
        return alloc(device, count * Sizeof.INT, what);
    }

    public long bytes() {
        return bytes;
    }

    CUdeviceptr ptr() {
        checkOpen();
        return ptr;
    }

    /** This buffer from element {@code index} of {@code elementBytes}-byte elements, as a kernel argument. */
    CudaDevice.Ptr at(long index, int elementBytes) {
        return new CudaDevice.Ptr(this, index * elementBytes);
    }

    void zero() {
        checkOpen();
        device.makeCurrent();
        check(JCudaDriver.cuMemsetD8(ptr, (byte) 0, bytes), "cuMemsetD8");
    }

    void upload(double[] a, long count) {
        copyIn(Pointer.to(a), count * Sizeof.DOUBLE, 0);
    }

    void upload(float[] a, long count, long byteOffset) {
        copyIn(Pointer.to(a), count * Sizeof.FLOAT, byteOffset);
    }

    void upload(int[] a, long count) {
        copyIn(Pointer.to(a), count * Sizeof.INT, 0);
    }

    void upload(short[] a, long count) {
        copyIn(Pointer.to(a), count * Sizeof.SHORT, 0);
    }

    void upload(byte[] a, int offset, long count) {
        copyIn(Pointer.to(a).withByteOffset(offset), count, 0);
    }

    void upload(byte[] a, int offset, long count, long byteOffset) {
        copyIn(Pointer.to(a).withByteOffset(offset), count, byteOffset);
    }

    void download(double[] a, long count) {
        copyOut(Pointer.to(a), count * Sizeof.DOUBLE);
    }

    void download(float[] a, long count) {
        copyOut(Pointer.to(a), count * Sizeof.FLOAT);
    }

    void download(int[] a, long count) {
        copyOut(Pointer.to(a), count * Sizeof.INT);
    }

    void download(byte[] a, long count) {
        copyOut(Pointer.to(a), count);
    }

    /** Copies of more than this many bytes go in pieces (multi-GiB Java arrays, e.g. U of a 28672-wide layer). */
    private static final long PIECE = 512L << 20;

    private void copyIn(Pointer host, long n, long byteOffset) {
        checkOpen();
        if (byteOffset + n > bytes) {
            throw new IllegalArgumentException("upload of " + n + " bytes at " + byteOffset + " into " + leak.what);
        }
        device.makeCurrent();
        for (long done = 0; done < n; done += PIECE) {
            long len = Math.min(PIECE, n - done);
            check(JCudaDriver.cuMemcpyHtoD(ptr.withByteOffset(byteOffset + done), host.withByteOffset(done), len),
                    "cuMemcpyHtoD(" + leak.what + ")");
        }
    }

    private void copyOut(Pointer host, long n) {
        checkOpen();
        if (n > bytes) {
            throw new IllegalArgumentException("download of " + n + " bytes from " + leak.what);
        }
        device.makeCurrent();
        for (long done = 0; done < n; done += PIECE) {
            long len = Math.min(PIECE, n - done);
            check(JCudaDriver.cuMemcpyDtoH(host.withByteOffset(done), ptr.withByteOffset(done), len),
                    "cuMemcpyDtoH(" + leak.what + ")");
        }
    }

    private void checkOpen() {
        if (leak.closed) {
            throw new IllegalStateException("device buffer already closed: " + leak.what);
        }
    }

    /** Frees the memory. */
    @Override
    public void close() {
        if (leak.closed) {
            throw new IllegalStateException("device buffer closed twice: " + leak.what);
        }
        leak.closed = true;
        cleanable.clean();
        device.makeCurrent();
        check(JCudaDriver.cuMemFree(ptr), "cuMemFree(" + leak.what + ")");
    }
}
