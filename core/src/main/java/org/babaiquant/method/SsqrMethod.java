package org.babaiquant.method;

import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.nonclip.BitBudget;
import org.babaiquant.nonclip.Ssqr;
import org.babaiquant.nonclip.SsqrFormat;

import java.util.Locale;

/**
 * SSQR: group scales searched so that the no-clip GPTQ pass leaves the target fraction of codes outside the grid,
 * stored as sparse outliers ({@link Ssqr}, {@link SsqrFormat}). With {@code targetBits > 0} the inlier bits, group size
 * and outlier rate are chosen per layer shape to fill that size ({@link BitBudget#ssqr}).
 */
final class SsqrMethod implements EncodedMethod {
    @Override
    public String name() {
        return "ssqr";
    }

    @Override
    public boolean clips() {
        return false;
    }

    @Override
    public java.util.Set<String> options() {
        return java.util.Set.of("--bits", "--group-size", "--asym", "--outlier-rate", "--target-bits");
    }

    @Override
    public int defaultGroupSize(int commandDefault) {
        return Ssqr.DEFAULT_GROUP_SIZE;
    }

    @Override
    public String description() {
        return "SSQR: asymmetric MSE group scales + sparse outliers, no clipping";
    }

    @Override
    public ColumnOrder preferredOrder() {
        return ColumnOrder.ACT_ORDER;
    }

    @Override
    public void check(QuantGrid.Spec grid, double outlierRate, double targetBits) {
        if (grid.sym()) {
            throw new IllegalArgumentException("ssqr uses the asymmetric MSE grid; --sym does not apply");
        }
        if (targetBits == 0) {
            Ssqr.Options.of(grid.bits(), grid.groupSize(), outlierRate, GptqSolver.Options.defaults()); // validates
        } else if (!(targetBits > 2)) {
            throw new IllegalArgumentException("ssqr --target-bits must be > 2, got " + targetBits);
        }
    }

    @Override
    public QuantResult quantize(String tensor, double[][] w, double[][] h, MethodSpec spec, QuantBackend backend) {
        GptqSolver.Options pass = spec.solverOptions(Method.GPTQ);
        Ssqr.Options so = spec.targetBits() > 0 ? BitBudget.ssqr(w.length, w[0].length, spec.targetBits(), pass)
                : Ssqr.Options.of(spec.grid().bits(), spec.grid().groupSize(), spec.outlierRate(), pass);
        Ssqr.Result r = Ssqr.quantize(w, h, so);
        String line = String.format(Locale.ROOT, "ssqr %s %d-bit g%d: outliers %.4f%% (target %.4f%%), scale multiplier %.5f"
                        + " after %d GPTQ passes%s", spec.order(), r.layer().bits(), r.layer().groupSize(), 100 * r.density(),
                100 * r.outlierRate(), r.multiplier(), r.evaluations(),
                r.inBand() ? "" : " (density could not be brought into the 5% band)");
        return new QuantResult.Encoded(name(), so.bits(), so.groupSize(), r.bytes(), r.lattice(),
                Methods.matrix(decode(r.bytes()), w[0].length), r::summary, line);
    }

    @Override
    public float[] decode(byte[] bytes) {
        return SsqrFormat.read(bytes).dequantize();
    }
}
