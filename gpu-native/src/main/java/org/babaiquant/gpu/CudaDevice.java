package org.babaiquant.gpu;

import jcuda.NativePointerObject;
import jcuda.Pointer;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;
import jcuda.driver.CUevent;
import jcuda.driver.CUfunction;
import jcuda.driver.CUmodule;
import jcuda.driver.JCudaDriver;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

import static org.babaiquant.gpu.CudaException.check;

/**
 * One GPU: its primary context (retained for the life of the JVM: contexts are expensive and Spark executors reuse
 * the device task after task) and the kernel modules, loaded with {@code cuModuleLoadData} from the jar's fatbins
 * (never compiled at run time). Every call makes the context current on the calling thread first; callers serialise
 * work on one device (the backend's methods are synchronized).
 */
public final class CudaDevice {
    /** System property with the default device ordinal when no Spark GPU address is given. */
    public static final String DEVICE_PROPERTY = "babai.cuda.device";

    private static final Map<Integer, CudaDevice> OPEN = new HashMap<>();

    public final int ordinal;
    public final String name;
    public final long totalMemory;
    public final int computeCapability;
    public final int driverVersion;
    private final CUdevice device = new CUdevice();
    private final CUcontext context = new CUcontext();
    private final Map<String, CUfunction> functions = new HashMap<>();

    private CudaDevice(int ordinal, KernelImage image) {
        this.ordinal = ordinal;
        int[] count = new int[1];
        check(JCudaDriver.cuDeviceGetCount(count), "cuDeviceGetCount");
        if (ordinal < 0 || ordinal >= count[0]) {
            throw new IllegalArgumentException("GPU ordinal " + ordinal + " does not exist (" + count[0]
                    + " device(s) visible)");
        }
        check(JCudaDriver.cuDeviceGet(device, ordinal), "cuDeviceGet");
        check(JCudaDriver.cuDevicePrimaryCtxRetain(context, device), "cuDevicePrimaryCtxRetain");
        makeCurrent();
        byte[] nameBytes = new byte[256];
        check(JCudaDriver.cuDeviceGetName(nameBytes, nameBytes.length, device), "cuDeviceGetName");
        int len = 0;
        while (len < nameBytes.length && nameBytes[len] != 0) {
            len++;
        }
        this.name = new String(nameBytes, 0, len, StandardCharsets.UTF_8);
        long[] mem = new long[1];
        check(JCudaDriver.cuDeviceTotalMem(mem, device), "cuDeviceTotalMem");
        this.totalMemory = mem[0];
        this.computeCapability = 10 * attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
                + attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        int[] v = new int[1];
        check(JCudaDriver.cuDriverGetVersion(v), "cuDriverGetVersion");
        this.driverVersion = v[0];
        image.entries().forEach((module, entries) -> {
            CUmodule mod = new CUmodule();
            check(JCudaDriver.cuModuleLoadData(mod, KernelImage.fatbin(module)), "cuModuleLoadData(" + module
                    + ".fatbin) on " + name + " (sm_" + computeCapability + ")");
            for (String e : entries) {
                CUfunction f = new CUfunction();
                check(JCudaDriver.cuModuleGetFunction(f, mod, e), "cuModuleGetFunction(" + e + ")");
                functions.put(e, f);
            }
        });
    }

    /** The device for a Spark GPU address or ordinal ("0", "1", ...); null or blank: {@value #DEVICE_PROPERTY} or 0. */
    static synchronized CudaDevice open(String address, KernelImage image) {
        int ordinal = parseOrdinal(address);
        CudaDevice d = OPEN.get(ordinal);
        if (d == null) {
            d = new CudaDevice(ordinal, image);
            OPEN.put(ordinal, d);
        }
        return d;
    }

    /**
     * Spark's task GPU addresses are the strings its discovery script printed, ordinals for NVIDIA GPUs. They are
     * CUDA ordinals as long as the executor does not also restrict CUDA_VISIBLE_DEVICES (then address and ordinal
     * differ; the Spark side passes what it was given).
     */
    static int parseOrdinal(String address) {
        String a = address == null || address.isBlank() ? System.getProperty(DEVICE_PROPERTY, "0") : address;
        try {
            int o = Integer.parseInt(a.trim());
            if (o >= 0) {
                return o;
            }
        } catch (NumberFormatException e) {
            // below
        }
        throw new IllegalArgumentException("GPU address must be a device ordinal (0, 1, ...), got '" + a + "'");
    }

    private int attribute(int attr) {
        int[] v = new int[1];
        check(JCudaDriver.cuDeviceGetAttribute(v, attr, device), "cuDeviceGetAttribute");
        return v[0];
    }

    /** Makes this device's context current on the calling thread. */
    void makeCurrent() {
        check(JCudaDriver.cuCtxSetCurrent(context), "cuCtxSetCurrent");
    }

    /** Free and total device memory, bytes. */
    long[] memoryInfo() {
        makeCurrent();
        long[] free = new long[1];
        long[] total = new long[1];
        check(JCudaDriver.cuMemGetInfo(free, total), "cuMemGetInfo");
        return new long[] {free[0], total[0]};
    }

    /**
     * Launches kernel {@code name} on the default stream. Arguments: {@link DeviceBuffer} (its device pointer),
     * {@link Ptr} (a buffer with an element offset), null (a null device pointer), Integer, Long, Double.
     */
    void launch(String name, int gridX, int gridY, int block, int sharedBytes, Object... args) {
        CUfunction f = functions.get(name);
        if (f == null) {
            throw new IllegalStateException("kernel " + name + " is not loaded");
        }
        NativePointerObject[] params = new NativePointerObject[args.length];
        for (int i = 0; i < args.length; i++) {
            Object a = args[i];
            if (a instanceof DeviceBuffer b) {
                params[i] = Pointer.to(b.ptr());
            } else if (a instanceof Ptr p) {
                params[i] = Pointer.to(p.buffer().ptr().withByteOffset(p.byteOffset()));
            } else if (a == null) {
                params[i] = Pointer.to(new long[] {0L});
            } else if (a instanceof Integer v) {
                params[i] = Pointer.to(new int[] {v});
            } else if (a instanceof Long v) {
                params[i] = Pointer.to(new long[] {v});
            } else if (a instanceof Double v) {
                params[i] = Pointer.to(new double[] {v});
            } else {
                throw new IllegalArgumentException("kernel argument " + i + " of " + name + ": " + a.getClass());
            }
        }
        makeCurrent();
        check(JCudaDriver.cuLaunchKernel(f, gridX, gridY, 1, block, 1, 1, sharedBytes, null, Pointer.to(params),
                null), "launch " + name);
    }

    /** Waits for all work on the device; surfaces asynchronous kernel errors (as {@link CudaException.Fatal}). */
    void synchronize(String what) {
        makeCurrent();
        check(JCudaDriver.cuCtxSynchronize(), what);
    }

    /** A buffer and an element offset into it, as a kernel pointer argument. */
    record Ptr(DeviceBuffer buffer, long byteOffset) {}

    /**
     * Mean GPU time in seconds of {@code work} (launches on the default stream) over {@code reps} runs, measured
     * with CUDA events: the one timing loop of the benchmarks.
     */
    double seconds(int reps, Runnable work) {
        Timer t = new Timer();
        try {
            t.start();
            for (int i = 0; i < reps; i++) {
                work.run();
            }
            t.stop();
            return t.millis() / 1e3 / reps;
        } finally {
            t.destroy();
        }
    }

    /** GPU time between two points of the default stream (CUDA events), for the benchmark. */
    final class Timer {
        private final CUevent start = new CUevent();
        private final CUevent stop = new CUevent();

        Timer() {
            makeCurrent();
            check(JCudaDriver.cuEventCreate(start, 0), "cuEventCreate");
            check(JCudaDriver.cuEventCreate(stop, 0), "cuEventCreate");
        }

        void start() {
            check(JCudaDriver.cuEventRecord(start, null), "cuEventRecord");
        }

        void stop() {
            check(JCudaDriver.cuEventRecord(stop, null), "cuEventRecord");
        }

        /** Milliseconds from start to stop, waiting for stop. */
        float millis() {
            check(JCudaDriver.cuEventSynchronize(stop), "cuEventSynchronize");
            float[] ms = new float[1];
            check(JCudaDriver.cuEventElapsedTime(ms, start, stop), "cuEventElapsedTime");
            return ms[0];
        }

        void destroy() {
            JCudaDriver.cuEventDestroy(start);
            JCudaDriver.cuEventDestroy(stop);
        }
    }

    @Override
    public String toString() {
        return "GPU " + ordinal + " " + name + " (sm_" + computeCapability + ", " + (totalMemory >> 20) + " MiB, driver "
                + driverVersion / 1000 + "." + driverVersion % 1000 / 10 + ")";
    }
}
