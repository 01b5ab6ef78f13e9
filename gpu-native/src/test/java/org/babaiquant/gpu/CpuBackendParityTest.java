package org.babaiquant.gpu;

import org.babaiquant.core.QuantBackend;

/** The reference against itself through the backend interface: the contract's own sanity. */
class CpuBackendParityTest extends BackendParityContract {
    @Override
    protected QuantBackend backend() {
        return QuantBackend.cpu();
    }
}
