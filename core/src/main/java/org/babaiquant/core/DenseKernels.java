package org.babaiquant.core;

import java.util.ArrayList;
import java.util.List;

/**
 * The float64 dense kernels the lattice algorithms run on, on flat row-major {@code double[]} matrices with offsets
 * and leading dimensions (element {@code (i, j)} of a matrix at offset {@code off} with leading dimension {@code ld}
 * is {@code a[off + i·ld + j]}). Four operations carry all the O(n³) work: the product behind GPTQ's lazy block update
 * and RTN's loss, the rank-k update behind {@code H = XᵀX}, and the Cholesky factor and triangular inverse behind
 * {@link DampedFactor}.
 *
 * <p>Implementations are pluggable so that core stays JDK-only: {@link Dense} is the pure-Java one, always present;
 * other modules contribute faster ones (native BLAS/LAPACK) through {@link java.util.ServiceLoader} as a
 * {@link Provider}. {@link #get()} picks once per JVM the available provider with the highest priority, logs the
 * choice, and falls back to {@link Dense} whenever a provider is missing, unavailable or throws. The system property
 * {@value #PROPERTY} names a provider to prefer (e.g. {@code pure-java} to compare against the native one).
 *
 * <p>Every implementation passes the same contract (the tests module's {@code DenseKernelsContractTest}); results
 * differ from each other only by float64 rounding.
 */
public interface DenseKernels {
    /** System property naming the provider to use when it is available (default: highest priority). */
    String PROPERTY = "babai.kernels";

    /** Short name for logs and the bench table, e.g. {@code pure-java} or {@code netlib-JNIBLAS}. */
    String name();

    /** One line for logs and the bench: what runs the kernels (library, threads). */
    default String description() {
        return name();
    }

    /**
     * {@code C += alpha · op(A) · op(B)}, C is {@code m×n}, op(A) is {@code m×k}, op(B) is {@code k×n}. With
     * {@code transA} the stored A is {@code k×m} and op(A) = Aᵀ (likewise B). C must not overlap A or B in memory
     * that either of them reads.
     */
    void gemm(boolean transA, boolean transB, int m, int n, int k, double alpha,
              double[] a, int aOff, int lda, double[] b, int bOff, int ldb, double[] c, int cOff, int ldc);

    /**
     * Upper triangle ({@code j ≥ i}) of the {@code n×n} matrix C {@code += alpha · Aᵀ·A}, where A is {@code k×n}
     * (k samples of n features, one per row: {@code XᵀX}). The strict lower triangle of C is not touched.
     */
    void syrkUpper(int n, int k, double alpha, double[] a, int aOff, int lda, double[] c, int cOff, int ldc);

    /**
     * In place, {@code a} is {@code n×n} with leading dimension n: the lower Cholesky factor {@code A = L·Lᵀ} of the
     * symmetric matrix whose lower triangle is given (the strict upper triangle is neither read nor written).
     * Numerical failure is a return value: {@code false} when a pivot is not positive or not finite, and then
     * {@code a} holds garbage.
     */
    boolean choleskyLower(double[] a, int n);

    /**
     * In place, {@code l} is {@code n×n} with leading dimension n: the inverse of the lower-triangular matrix with
     * positive diagonal in its lower triangle; on return the strict upper triangle is zero.
     */
    void invertLower(double[] l, int n);

    /** A source of kernels, found through {@code META-INF/services/org.babaiquant.core.DenseKernels$Provider}. */
    interface Provider {
        /** The name {@link #PROPERTY} selects it by, equal to its kernels' {@link DenseKernels#name()} prefix. */
        String name();

        /** Higher wins; the pure-Java kernels have 0. */
        int priority();

        /** Whether the kernels can run in this JVM (native library loaded, ...). Must not throw. */
        boolean available();

        /** One line on why {@link #available()} is false (or what was loaded when it is true). */
        String describe();

        /** Only called when {@link #available()}. */
        DenseKernels kernels();
    }

    /** The kernels the algorithms use in this JVM, chosen once. */
    static DenseKernels get() {
        return KernelSelection.CHOSEN;
    }

    /** The pure-Java kernels, always available. */
    static DenseKernels pureJava() {
        return Dense.INSTANCE;
    }

    /** Every available implementation, highest priority first (pure Java last): what a contract test runs over. */
    static List<DenseKernels> allAvailable() {
        List<DenseKernels> all = new ArrayList<>();
        for (Provider p : KernelSelection.providers()) {
            DenseKernels k = KernelSelection.kernelsIfAvailable(p);
            if (k != null) {
                all.add(k);
            }
        }
        all.add(Dense.INSTANCE);
        return all;
    }
}
