package org.babaiquant.cli;

import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.method.Methods;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.method.QuantMethod;
import org.babaiquant.nonclip.Ssqr;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Mixin: the method and its grid, declared once for {@code quantize-layer} and {@code quantize}, parsed into one
 * {@link MethodSpec}. The two commands differ only in their defaults ({@link Defaults}).
 */
public final class MethodOptions {
    @Option(names = "--method", defaultValue = "gptq", paramLabel = "NAME",
            description = "gptq | babai | rtn | ssqr | hptq | hrtn (default: ${DEFAULT-VALUE})")
    String method;

    @Option(names = "--bits", description = "grid bits, 2..8 (default: 4); not for hptq/hrtn")
    Integer bits;

    @Option(names = "--group-size",
            description = "input columns per scale; -1 = one per row (default: -1 for quantize-layer, 128 for quantize and ssqr)")
    Integer groupSize;

    @Option(names = "--sym", description = "symmetric grid (zero point (maxq+1)/2)")
    boolean sym;

    @Option(names = "--asym", description = "asymmetric min-max grid (default)")
    boolean asym;

    @Option(names = "--mse", description = "MSE shrink search of each group's range (off by default)")
    boolean mse;

    @Option(names = "--no-clip", description = "keep integer codes outside [0, maxq] (the lattice point itself; stored unpacked as int32)")
    boolean noClip;

    @Option(names = "--outlier-rate", paramLabel = "R",
            description = "ssqr: target fraction of weights stored as outliers (default: " + Ssqr.DEFAULT_OUTLIER_RATE + ")")
    Double outlierRate;

    @Option(names = "--target-bits", paramLabel = "B",
            description = "hptq/hrtn (required): bits per weight of the stored layer, tables and scale included, e.g. 3.125;"
                    + " ssqr: when set, inlier bits, group size and outlier rate per layer shape to fill it")
    Double targetBits;

    @Mixin
    SolverOptions solver = new SolverOptions();

    /** A command's defaults, and whether options that belong to another method are refused. */
    record Defaults(int groupSize, ColumnOrder order, boolean refuseForeignOptions) {}

    static final Defaults QUANTIZE_LAYER = new Defaults(-1, ColumnOrder.NATURAL, true);
    static final Defaults QUANTIZE = new Defaults(128, ColumnOrder.ACT_ORDER, false);

    /** The run's spec, validated (IllegalArgumentException naming the option: exit 2 before anything is read). */
    MethodSpec spec(Defaults d) {
        if (sym && asym) {
            throw new IllegalArgumentException("--sym and --asym are mutually exclusive");
        }
        QuantMethod m = Methods.get(method);
        if (d.refuseForeignOptions()) {
            Map<String, Boolean> given = new LinkedHashMap<>();
            given.put("--bits", bits != null);
            given.put("--group-size", groupSize != null);
            given.put("--sym", sym);
            given.put("--asym", asym);
            given.put("--mse", mse);
            given.put("--no-clip", noClip);
            given.put("--outlier-rate", outlierRate != null);
            given.put("--target-bits", targetBits != null);
            for (Map.Entry<String, Boolean> e : given.entrySet()) {
                if (e.getValue() && !m.options().contains(e.getKey())) {
                    List<String> takers = Methods.names().stream().filter(n -> Methods.get(n).options().contains(e.getKey())).toList();
                    throw new IllegalArgumentException(e.getKey() + " does not apply to --method " + m.name() + ": it applies to --method "
                            + Methods.sentence(takers, "or") + " only" + (m.options().isEmpty() ? "" : "; " + m.name() + " takes "
                            + String.join(", ", new java.util.TreeSet<>(m.options()))));
                }
            }
        }
        String name = m.name();
        int gs = groupSize != null ? groupSize : m.defaultGroupSize(d.groupSize());
        return new MethodSpec(name, new QuantGrid.Spec(bits == null ? 4 : bits, gs, sym, mse), solver.order(d.order()), !noClip,
                solver.damp, solver.blockSize, solver.maxDampTries, outlierRate == null ? Ssqr.DEFAULT_OUTLIER_RATE : outlierRate,
                targetBits == null ? 0 : targetBits);
    }
}
