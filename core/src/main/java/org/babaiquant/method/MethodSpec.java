package org.babaiquant.method;

import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantGrid;

import java.io.Serializable;
import java.util.Locale;

/**
 * Every option of one quantization run, parsed and validated once (by the CLI mixins, the pipeline plan or a test)
 * and then carried unchanged to wherever the layer is quantized (a Spark executor: it is {@link Serializable}).
 *
 * @param method       a name of the {@link Methods} registry (rtn, gptq, babai, ssqr, hptq, hrtn)
 * @param grid         bits, group size (−1 = one group per row), symmetry and MSE search of the grid methods; ssqr
 *                     takes its bits and group size (and always the asymmetric MSE grid); hptq/hrtn size their one
 *                     scale by {@code targetBits} and ignore the grid
 * @param order        the column order of the GPTQ/Babai pass (every method runs one)
 * @param clip         codes clamped into [0, maxq]; always false for the methods that store unbounded codes
 * @param damp         λ = damp · mean(diag H), escalated ×10 up to {@code maxDampTries} times on failure
 * @param outlierRate  ssqr: the target fraction of weights stored as outliers
 * @param targetBits   hptq/hrtn (required) and ssqr (optional, 0 = none): bits per weight of the stored layer
 */
public record MethodSpec(String method, QuantGrid.Spec grid, ColumnOrder order, boolean clip, double damp, int blockSize,
                         int maxDampTries, double outlierRate, double targetBits) implements Serializable {
    public MethodSpec {
        method = method.toLowerCase(Locale.ROOT);
        QuantMethod m = Methods.get(method);
        clip = clip && m.clips();
        new GptqSolver.Options(Method.GPTQ, grid, order, clip, damp, blockSize, maxDampTries); // validates the pass
        if (Double.isNaN(targetBits) || Double.isInfinite(targetBits) || targetBits < 0) {
            throw new IllegalArgumentException("target bits per weight must be a finite number ≥ 0, got " + targetBits);
        }
        m.check(grid, outlierRate, targetBits);
    }

    /** A grid method (rtn, gptq, babai) with the defaults of the rest: block 128, 6 damping tries. */
    public static MethodSpec grid(String method, QuantGrid.Spec grid, ColumnOrder order, boolean clip, double damp) {
        return new MethodSpec(method, grid, order, clip, damp, 128, 6, 0.01, 0);
    }

    public QuantMethod quantMethod() {
        return Methods.get(method);
    }

    /** The options of the one GPTQ/Babai/RTN pass of a grid method (the solver's own record). */
    public GptqSolver.Options solverOptions(Method lattice) {
        return new GptqSolver.Options(lattice, grid, order, clip, damp, blockSize, maxDampTries);
    }

    public MethodSpec withMethod(String m) {
        return new MethodSpec(m, grid, order, clip, damp, blockSize, maxDampTries, outlierRate, targetBits);
    }

    public MethodSpec withGrid(QuantGrid.Spec g) {
        return new MethodSpec(method, g, order, clip, damp, blockSize, maxDampTries, outlierRate, targetBits);
    }

    public MethodSpec withOrder(ColumnOrder o) {
        return new MethodSpec(method, grid, o, clip, damp, blockSize, maxDampTries, outlierRate, targetBits);
    }

    public MethodSpec withClip(boolean c) {
        return new MethodSpec(method, grid, order, c, damp, blockSize, maxDampTries, outlierRate, targetBits);
    }

    public MethodSpec withTargetBits(double t) {
        return new MethodSpec(method, grid, order, clip, damp, blockSize, maxDampTries, outlierRate, t);
    }

    public MethodSpec withOutlierRate(double r) {
        return new MethodSpec(method, grid, order, clip, damp, blockSize, maxDampTries, r, targetBits);
    }
}
