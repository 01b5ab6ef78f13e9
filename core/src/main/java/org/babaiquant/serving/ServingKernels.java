package org.babaiquant.serving;

import org.babaiquant.core.QuantBackend;
import org.babaiquant.nonclip.SsqrLayer;

/**
 * The serving kernels: products of a quantized layer with activations, {@code y = X·Wᵀ}, straight from the stored
 * formats (GPTQ-packed, SSQR). Separate from {@link QuantBackend} (what the quantization pipeline uses: Hessian and
 * solver) because nothing in the pipeline multiplies by quantized weights; the CUDA backend implements both.
 * {@link #cpu()} is the float64 reference every other implementation is checked against.
 */
public interface ServingKernels {
    /** Largest batch of {@link Linear#apply}. */
    int MAX_BATCH = 8;

    /** Short name: {@code cpu}, {@code cuda}. */
    String name();

    /**
     * A quantized linear layer made ready for repeated products (on the device for the CUDA backend): {@code apply}
     * computes {@code y = X·Wᵀ} for {@code batch} (1..{@value #MAX_BATCH}) input rows.
     */
    interface Linear extends AutoCloseable {
        int in();

        int out();

        /** {@code x} row-major [batch][in] → y row-major [batch][out]. */
        float[] apply(float[] x, int batch);

        @Override
        void close();
    }

    /** The dequantize-and-multiply operator of a packed GPTQ layer. */
    Linear gptqLinear(PackedGptq layer);

    /** The dequantize-and-multiply operator of an SSQR layer: dense codes plus CSR outliers. */
    Linear ssqrLinear(SsqrLayer layer);

    /** The CPU reference kernels. */
    static ServingKernels cpu() {
        return CpuServingKernels.INSTANCE;
    }

    /** The serving kernels of a backend: its own when it has them (CUDA), else the CPU reference. */
    static ServingKernels of(QuantBackend backend) {
        return backend instanceof ServingKernels k ? k : cpu();
    }

    /** Checks a GEMV input: batch in 1..{@value #MAX_BATCH}, {@code x.length == batch·in}. */
    static void checkBatch(float[] x, int batch, int in) {
        if (batch < 1 || batch > MAX_BATCH) {
            throw new IllegalArgumentException("batch must be in 1.." + MAX_BATCH + ", got " + batch);
        }
        if (x.length != (long) batch * in) {
            throw new IllegalArgumentException("x has " + x.length + " values, expected batch " + batch + " × in "
                    + in);
        }
    }
}
