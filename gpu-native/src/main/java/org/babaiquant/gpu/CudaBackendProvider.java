package org.babaiquant.gpu;

import org.babaiquant.core.QuantBackend;

/** Registers the CUDA backend with {@link QuantBackend#select} (META-INF/services). */
public final class CudaBackendProvider implements QuantBackend.Provider {
    @Override
    public String name() {
        return "cuda";
    }

    @Override
    public int priority() {
        return 100;
    }

    @Override
    public QuantBackend.Availability availability() {
        return CudaProbe.availability();
    }

    @Override
    public QuantBackend open(String deviceAddress) {
        return CudaBackend.open(deviceAddress);
    }
}
