package org.babaiquant.gpu;

import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;

/**
 * The CUDA backend's solver path without a GPU: {@link LatticeSweep} (the block/strip loop, permutation, slabs,
 * scatter, report) driving {@link HostSweep}, the Java twin of solver.cu's kernels. Hessian and GEMV go to the CPU
 * backend here; their CUDA kernels are covered by {@link CudaBackendParityTest} on a GPU host.
 */
class HostEmulationParityTest extends BackendParityContract {
    private static final QuantBackend EMULATION = new QuantBackend() {
        @Override
        public String name() {
            return "host-emulation";
        }

        @Override
        public String description() {
            return "CUDA sweep emulated on the host";
        }

        @Override
        public HessianSum hessian(int n) {
            return QuantBackend.cpu().hessian(n);
        }

        @Override
        public QuantizedLayer quantize(double[][] w, double[][] h, GptqSolver.Options opt, QuantGrid fixedGrid) {
            return opt.method() == Method.GPTQ
                    ? LatticeSweep.quantize(w, h, opt, fixedGrid, HostSweep::new, null)
                    : GptqSolver.quantize(w, h, opt, fixedGrid);
        }
    };

    @Override
    protected QuantBackend backend() {
        return EMULATION;
    }
}
