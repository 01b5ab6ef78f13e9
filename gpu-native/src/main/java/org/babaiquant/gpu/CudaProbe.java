package org.babaiquant.gpu;

import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;
import org.babaiquant.core.QuantBackend.Availability;

/**
 * Whether the CUDA backend can run in this JVM, decided once: the kernels must have been built into the jar, JCuda's
 * native library and the driver ({@code libcuda.so.1}) must load, and a device must be visible. Without a GPU,
 * JCudaDriver's class initialisation throws ({@code UnsatisfiedLinkError}, then {@code NoClassDefFoundError} on every
 * later touch), so it is touched here only, once, and the answer remembered.
 */
public final class CudaProbe {
    private static volatile Availability result;
    private static volatile KernelImage image;

    private CudaProbe() {}

    public static Availability availability() {
        Availability a = result;
        if (a == null) {
            synchronized (CudaProbe.class) {
                if (result == null) {
                    result = probe();
                }
                a = result;
            }
        }
        return a;
    }

    static KernelImage image() {
        availability();
        return image;
    }

    private static Availability probe() {
        KernelImage img = KernelImage.load();
        image = img;
        if (!img.built()) {
            return new Availability(false, img.reason());
        }
        try {
            JCudaDriver.setExceptionsEnabled(false);
            int rc = JCudaDriver.cuInit(0);
            if (rc != CUresult.CUDA_SUCCESS) {
                return new Availability(false, "cuInit failed: " + CUresult.stringFor(rc)
                        + " (no usable NVIDIA driver or GPU)");
            }
            int[] count = new int[1];
            rc = JCudaDriver.cuDeviceGetCount(count);
            if (rc != CUresult.CUDA_SUCCESS || count[0] == 0) {
                return new Availability(false, "no CUDA device visible (" + CUresult.stringFor(rc) + ")");
            }
            int[] v = new int[1];
            JCudaDriver.cuDriverGetVersion(v);
            return new Availability(true, count[0] + " CUDA device(s), driver API " + v[0] / 1000 + "."
                    + v[0] % 1000 / 10 + "; " + img.reason());
        } catch (VirtualMachineError e) {
            throw e;
        } catch (Throwable t) {
            String msg = String.valueOf(t.getMessage()).lines().findFirst().orElse("");
            return new Availability(false, "JCuda could not load the CUDA driver: " + t.getClass().getSimpleName()
                    + ": " + msg);
        }
    }
}
