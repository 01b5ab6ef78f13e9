package org.babaiquant.method;

import org.babaiquant.BadInputException;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.Half;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;

import java.util.Locale;

/**
 * The grid methods: one pass of the lattice solver ({@link Method#RTN}, {@link Method#GPTQ} or {@link Method#BABAI})
 * on a static grid, stored as codes + fp16 scales + zeros + perm.
 *
 * <p><b>Scale policy</b> (the same for {@code quantize-layer}, {@code quantize}, {@code compare} and the demo): the
 * grid is fitted on the weights the solver sees (inputs that never fired, H_jj = 0, zeroed) and its scales are rounded
 * to fp16 <em>before</em> the pass ({@link #storedGrid}). The stored fp16 scales are then exactly the lattice the
 * solver chose its points on: the Babai bound and the loss hold for what is stored, and decoding the shards gives the
 * solver's dequantized weights bit for bit.
 */
public final class LatticeMethod implements QuantMethod {
    /** Smallest positive fp16 (subnormal): the scale of a group whose fitted scale rounds to 0 in fp16. */
    static final double MIN_FP16_SCALE = 5.960464477539063E-8;

    private final Method lattice;
    private final String description;

    LatticeMethod(Method lattice, String description) {
        this.lattice = lattice;
        this.description = description;
    }

    @Override
    public String name() {
        return lattice.cliName;
    }

    @Override
    public boolean clips() {
        return true;
    }

    @Override
    public java.util.Set<String> options() {
        return java.util.Set.of("--bits", "--group-size", "--sym", "--asym", "--mse", "--no-clip");
    }

    @Override
    public String description() {
        return description;
    }

    @Override
    public void check(QuantGrid.Spec grid, double outlierRate, double targetBits) {
        // the grid is validated by QuantGrid.Spec; --target-bits and --outlier-rate are refused by the CLI mixin
    }

    @Override
    public QuantResult quantize(String tensor, double[][] w, double[][] h, MethodSpec spec, QuantBackend backend) {
        QuantizedLayer q = backend.quantize(w, h, spec.solverOptions(lattice), storedGrid(tensor, w, h, spec.grid()));
        return new QuantResult.Grid(name(), q, spec.grid().groupSize());
    }

    /**
     * The scale policy: the min-max/MSE grid of {@code spec} fitted on the live weights (columns j with H_jj = 0
     * zeroed, as the solver does), scales rounded to fp16 (a scale that rounds to 0 becomes the smallest fp16
     * subnormal). A scale beyond fp16's range is bad input: the message names the tensor, the value and where.
     */
    public static QuantGrid storedGrid(String tensor, double[][] w, double[][] h, QuantGrid.Spec spec) {
        double[][] live = w;
        for (int j = 0; j < h.length; j++) {
            if (h[j][j] == 0) {
                if (live == w) {
                    live = new double[w.length][];
                    for (int r = 0; r < w.length; r++) {
                        live[r] = w[r].clone();
                    }
                }
                for (double[] row : live) {
                    row[j] = 0;
                }
            }
        }
        QuantGrid g = QuantGrid.fit(live, spec);
        double[][] s = new double[g.rows][g.groups()];
        for (int r = 0; r < g.rows; r++) {
            for (int k = 0; k < g.groups(); k++) {
                double v = Half.toFloat(Half.fromFloat((float) g.scale[r][k]));
                if (!Double.isFinite(v)) {
                    throw new BadInputException(String.format(Locale.ROOT, "%s: the %d-bit scale of row %d, group %d is %.6g,"
                                    + " beyond float16 (max 65504): the weights are out of range for stored fp16 scales", tensor,
                            spec.bits(), r, k, g.scale[r][k]));
                }
                s[r][k] = v > 0 ? v : MIN_FP16_SCALE;
            }
        }
        return QuantGrid.of(g.bits, spec.groupSize(), g.cols, s, g.zero);
    }

    @Override
    public ColumnOrder preferredOrder() {
        return switch (lattice) {
            case BABAI -> ColumnOrder.MIN_PIVOT;
            case RTN -> ColumnOrder.NATURAL;
            default -> ColumnOrder.ACT_ORDER;
        };
    }
}
