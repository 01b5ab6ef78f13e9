package org.babaiquant.core;

import java.util.regex.Pattern;

/**
 * What the quantize stage does with a mixture-of-experts expert whose Hessian saw fewer calibration tokens than the
 * layer has inputs (t &lt; n): H = XᵀX then has rank ≤ t, so GPTQ fits the expert to a t-dimensional subspace and
 * leaves the other n − t directions to the 1% damping alone (overfitting the few tokens), and with t = 0 every input
 * is a dead column (H = 0) and GPTQ's dead-column rule would zero the whole weight. GPTQ tools are known to fail here
 * (NaN scales, experts silently left unquantized). The rule, applied per layer and recorded in the report's
 * {@code starved} column:
 * <ul>
 *   <li><b>t = 0</b> (the expert received no token; any rule): the method runs on H = I, the weight-space error, instead
 *       of an all-dead Hessian; for gptq, babai and rtn that gives exactly round-to-nearest codes (a diagonal H has no
 *       error feedback, in every order). Recorded {@code identity}.</li>
 *   <li><b>0 &lt; t &lt; n, rule {@code damp}</b> (default): escalated damping. The solver damps H + λI with
 *       λ = damp · mean(diag H); the damping fraction is raised to at least (n − t)/t. Since codes do not depend on the
 *       scale of H, this is the same as shrinking the per-token second moment H/t toward its mean variance
 *       (tr H / (n·t))·I with weight α = 1 − t/n: (t/n)·H/t + (1 − t/n)·(tr H/(n·t))·I ∝ H + ((n − t)/t)·mean(diag H)·I.
 *       With few tokens the result approaches round to nearest, at t → n the requested damping. Recorded {@code damp};
 *       the report's {@code damping} column shows the fraction used.</li>
 *   <li><b>0 &lt; t &lt; n, rule {@code rtn}</b>: round to nearest on the layer's grid, its loss measured on the expert's
 *       own H (grid methods only). Recorded {@code rtn}.</li>
 *   <li>Otherwise (t ≥ n, or not an expert): unchanged, recorded {@code none}. Dense layers keep GPTQ's behaviour
 *       with t &lt; n (the bundled MiniLM FFN-down has 1024 tokens for 1536 inputs); a dense layer with no token at all
 *       is an error for the caller to report.</li>
 * </ul>
 * An expert is a layer whose name holds {@code .experts.<number>.} (Mixtral's {@code block_sparse_moe.experts.N.w1},
 * Qwen-MoE's and DeepSeek's {@code mlp.experts.N.gate_proj}); shared experts ({@code shared_expert(s).}) see every
 * token and are dense layers here.
 */
public final class StarvedExperts {
    private static final Pattern EXPERT = Pattern.compile(".*\\.experts\\.\\d+\\..*");

    private StarvedExperts() {}

    /** The rule for experts with 0 &lt; tokens &lt; inputs. */
    public enum Rule {
        DAMP("damp"), RTN("rtn");

        public final String cliName;

        Rule(String cliName) {
            this.cliName = cliName;
        }

        public static Rule parse(String s) {
            for (Rule r : values()) {
                if (r.cliName.equalsIgnoreCase(s)) {
                    return r;
                }
            }
            throw new IllegalArgumentException("unknown starved-expert rule '" + s + "': expected damp or rtn");
        }
    }

    /**
     * What to run: the report's {@code starved} value ({@code none}, {@code identity}, {@code damp} or {@code rtn}),
     * whether H is replaced by the identity, whether the method becomes round to nearest, and the damping fraction.
     */
    public record Plan(String applied, boolean identityHessian, boolean rtn, double damp) {}

    public static boolean isExpert(String layer) {
        return EXPERT.matcher(layer).matches();
    }

    /** The damping fraction that shrinks H/t toward its mean variance with weight 1 − t/n (see the class comment). */
    public static double escalatedDamping(long tokens, int inputs) {
        if (tokens <= 0 || tokens >= inputs) {
            throw new IllegalArgumentException("escalated damping is for 0 < tokens < inputs, got " + tokens + " of " + inputs);
        }
        return (inputs - tokens) / (double) tokens;
    }

    /** The rule for one layer of {@code inputs} columns whose Hessian saw {@code tokens} tokens; {@code damp} as asked. */
    public static Plan plan(String layer, long tokens, int inputs, Rule rule, double damp) {
        if (!isExpert(layer) || tokens >= inputs) {
            return new Plan("none", false, false, damp);
        }
        if (tokens <= 0) {
            return new Plan("identity", true, false, damp);
        }
        if (rule == Rule.RTN) {
            return new Plan("rtn", false, true, damp);
        }
        return new Plan("damp", false, false, Math.max(damp, escalatedDamping(tokens, inputs)));
    }

    /** The solver options for a plan: RTN and the damping fraction applied. */
    public static GptqSolver.Options apply(Plan p, GptqSolver.Options opt) {
        return (p.rtn() ? opt.withMethod(Method.RTN) : opt).withDamp(p.damp());
    }

    /** H = I of size n (the t = 0 case). */
    public static double[][] identity(int n) {
        double[][] h = new double[n][n];
        for (int j = 0; j < n; j++) {
            h[j][j] = 1;
        }
        return h;
    }
}
