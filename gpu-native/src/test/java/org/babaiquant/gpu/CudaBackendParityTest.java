package org.babaiquant.gpu;

import org.babaiquant.core.QuantBackend;
import org.junit.jupiter.api.BeforeEach;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** The CUDA backend through the same contract; skipped (not failed) where no GPU and kernels are available. */
class CudaBackendParityTest extends BackendParityContract {
    @BeforeEach
    void needsAGpu() {
        QuantBackend.Availability a = CudaProbe.availability();
        assumeTrue(a.available(), () -> "CUDA backend unavailable here: " + a.reason());
    }

    @Override
    protected QuantBackend backend() {
        return CudaBackend.open(null);
    }
}
