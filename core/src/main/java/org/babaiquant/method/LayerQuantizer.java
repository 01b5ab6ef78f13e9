package org.babaiquant.method;

import org.babaiquant.BadInputException;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.Validation;

import java.util.Locale;

/**
 * "Quantize one layer", written once: {@code quantize-layer}, the Spark quantize stage, {@code compare} and the demo
 * all come here. It checks the inputs (non-empty, finite, H a Gram matrix of the right size), runs the method of the
 * spec, and refuses a result that is not finite, so that no command ever stores or reports NaN/Inf: weights whose
 * scales overflow fp16 (or whose loss overflows float64) are bad input naming the tensor.
 */
public final class LayerQuantizer {
    private LayerQuantizer() {}

    /**
     * @param tensor what the user calls W (tensor name or file), used in every error message
     * @param tokens calibration tokens behind H, or −1 when H was given directly
     */
    public static QuantResult quantize(String tensor, double[][] w, double[][] h, long tokens, MethodSpec spec,
                                       QuantBackend backend) {
        Validation.weights(w, tensor);
        Validation.hessian(h, w[0].length);
        QuantResult r;
        try {
            r = spec.quantMethod().quantize(tensor, w, h, spec, backend);
        } catch (BadInputException e) {
            throw e.getMessage().contains(tensor) ? e : new BadInputException(tensor + ": " + e.getMessage(), e);
        }
        LayerReport rep = r.report();
        rep.tokens = tokens;
        rep.bitsPerWeight = r.bitsPerWeight();
        requireFinite(tensor, "loss", rep.loss());
        requireFinite(tensor, "Babai bound", rep.bound());
        double[][] dq = r.dequant();
        for (int i = 0; i < dq.length; i++) {
            for (int j = 0; j < dq[i].length; j++) {
                if (!Double.isFinite(dq[i][j])) {
                    throw new BadInputException(String.format(Locale.ROOT, "%s: the quantized weight [%d, %d] is %s (W there is"
                            + " %.6g): the weights are out of range for the stored scales", tensor, i, j, dq[i][j], w[i][j]));
                }
            }
        }
        return r;
    }

    /**
     * Sets the report's {@code evalRelError} = ‖Xe·Wᵀ − Xe·Qᵀ‖ / ‖Xe·Wᵀ‖ on held-out inputs {@code xe}, which must be
     * non-empty, finite and as wide as W ({@code what} names them in errors).
     */
    public static void evaluate(String tensor, QuantResult r, double[][] w, double[][] xe, String what) {
        Validation.weights(xe, what);
        if (xe[0].length != w[0].length) {
            throw new BadInputException(what + " has " + xe[0].length + " columns but " + tensor + " has " + w[0].length
                    + " input columns");
        }
        double e = GptqSolver.relativeOutputError(xe, w, r.dequant());
        requireFinite(tensor, "held-out relative error on " + what, e);
        r.report().evalRelError = e;
    }

    private static void requireFinite(String tensor, String what, double v) {
        if (!Double.isFinite(v)) {
            throw new BadInputException(tensor + ": the " + what + " is " + v
                    + " (weights or inputs too large for float64 / fp16 scales); nothing was written");
        }
    }
}
