package org.babaiquant.core;

import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * The error report of one quantized layer, produced in the same pass as the codes.
 *
 * <p>Per output row r (all in the units of the Hessian given, e.g. H = XᵀX summed over tokens):
 * <ul>
 *   <li>{@code rowLoss[r] = Σ_k ((w̃_k − q_k)/U_kk)²} — by the paper's loss identity this equals the damped error
 *       {@code (q−w)ᵀ(H+λI)(q−w) = ‖X′(q−w)‖²}, {@code X′ = [X; √λ·I]};</li>
 *   <li>{@code rowBound[r] = ¼ Σ_k s_k²/U_kk²} — Babai's bound, valid for the row when {@code rowClipped[r] == 0};</li>
 *   <li>{@code rowClipped[r]}: weights whose code was clamped into [0, maxq] (0 in no-clip mode).</li>
 * </ul>
 * For RTN the loss is computed directly as {@code (q−w)ᵀ(H+λI)(q−w)} and the bound is that of GPTQ in the same
 * order on the same grid (for comparison; RTN itself has no such guarantee).
 */
public final class LayerReport {
    public Method method;
    public ColumnOrder order;
    public int bits;
    public int groupSize;
    public boolean sym;
    public boolean mse;
    public boolean clip;
    public int rows;
    public int cols;
    /** Calibration tokens behind H, or −1 when H was given directly without a count. */
    public long tokens = -1;
    public String hessianNormalisation = "sum";
    public double percdampRequested;
    public double percdampUsed;
    public double lambda;
    public int dampAttempts;
    public int deadColumns;
    public double traceD;
    public double[] rowLoss;
    public double[] rowBound;
    public int[] rowClipped;
    public double seconds;
    /** Storage cost in the GPTQ checkpoint layout: packed codes + fp16 scales + packed zeros, per weight. */
    public double bitsPerWeight;
    /** ‖Xe·Wᵀ − Xe·Qᵀ‖_F / ‖Xe·Wᵀ‖_F on held-out rows, NaN when none were given. */
    public double evalRelError = Double.NaN;

    public double loss() {
        double s = 0;
        for (double v : rowLoss) {
            s += v;
        }
        return s;
    }

    public double bound() {
        double s = 0;
        for (double v : rowBound) {
            s += v;
        }
        return s;
    }

    public long clipped() {
        long s = 0;
        for (int v : rowClipped) {
            s += v;
        }
        return s;
    }

    /** Σ loss / Σ bound. */
    public double lossOverBound() {
        return loss() / bound();
    }

    /** Rows with no clipped weight whose loss exceeds the Babai bound (by more than float64 round-off): must be 0. */
    public int boundViolations() {
        int v = 0;
        for (int r = 0; r < rows; r++) {
            if (rowClipped[r] == 0 && rowLoss[r] > rowBound[r] * (1 + 1e-9)) {
                v++;
            }
        }
        return v;
    }

    /** The layer figures as an ordered map (what report.json holds, without the per-row arrays). */
    public Map<String, Object> summary() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("method", method.cliName);
        m.put("order", order.cliName);
        m.put("bits", bits);
        m.put("group_size", groupSize);
        m.put("sym", sym);
        m.put("mse", mse);
        m.put("clip", clip);
        m.put("rows", rows);
        m.put("cols", cols);
        m.put("tokens", tokens);
        m.put("hessian_normalisation", hessianNormalisation);
        m.put("loss", loss());
        m.put("bound", bound());
        m.put("loss_over_bound", lossOverBound());
        m.put("bound_violations", boundViolations());
        m.put("clipped", clipped());
        m.put("damping", percdampUsed);
        m.put("damping_requested", percdampRequested);
        m.put("damping_lambda", lambda);
        m.put("damping_attempts", dampAttempts);
        m.put("dead_columns", deadColumns);
        m.put("trace_d", traceD);
        m.put("bits_per_weight", bitsPerWeight);
        m.put("eval_rel_error", evalRelError);
        m.put("seconds", seconds);
        return m;
    }

    /** report.json: the summary plus the per-row arrays {@code row_loss}, {@code row_bound}, {@code row_clipped}. */
    public String toJson() {
        Map<String, Object> m = summary();
        m.put("row_loss", rowLoss);
        m.put("row_bound", rowBound);
        m.put("row_clipped", rowClipped);
        return Json.write(m);
    }

    /** One human-readable line. */
    public String oneLine() {
        return String.format(Locale.ROOT,
                "%s %s %d-bit g%d%s%s: loss %.6g  bound %.6g  loss/bound %.4f  clipped %d  tr(D) %.6g  damp %.3g (x%d)  %.3f bpw%s  %.2fs",
                method, order, bits, groupSize, sym ? " sym" : " asym", clip ? "" : " no-clip", loss(), bound(),
                lossOverBound(), clipped(), traceD, percdampUsed, dampAttempts, bitsPerWeight,
                Double.isNaN(evalRelError) ? "" : String.format(Locale.ROOT, "  eval rel err %.5f", evalRelError),
                seconds);
    }
}
