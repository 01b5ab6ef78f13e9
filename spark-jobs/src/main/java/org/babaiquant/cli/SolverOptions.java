package org.babaiquant.cli;

import org.babaiquant.core.ColumnOrder;
import picocli.CommandLine.Option;

/** Mixin: the options of the GPTQ/Babai pass every method runs (order, damping, block size), declared once. */
public final class SolverOptions {
    @Option(names = "--order", paramLabel = "ORDER",
            description = "column order: natural | reverse | act-order | min-pivot (default: natural for quantize-layer and"
                    + " compare, act-order for quantize)")
    String order;

    @Option(names = "--damp", defaultValue = "0.01",
            description = "λ = damp · mean(diag H), escalated ×10 on failure (default: ${DEFAULT-VALUE})")
    double damp;

    @Option(names = "--block-size", defaultValue = "128", description = "GPTQ lazy-update block (default: ${DEFAULT-VALUE})")
    int blockSize;

    @Option(names = "--max-damp-tries", defaultValue = "6",
            description = "damping escalations before giving up (default: ${DEFAULT-VALUE})")
    int maxDampTries;

    /** {@code --order}, or the command's default. */
    ColumnOrder order(ColumnOrder byDefault) {
        return order == null ? byDefault : ColumnOrder.parse(order);
    }
}
