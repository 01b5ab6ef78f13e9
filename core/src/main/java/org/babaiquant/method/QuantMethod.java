package org.babaiquant.method;

import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantGrid;

/**
 * One quantization method: a row of the {@link Methods} registry. It checks its options once (before any file is
 * read) and turns one weight matrix and its Hessian into a {@link QuantResult}, which owns the stored form.
 * Callers go through {@link LayerQuantizer}, which does the input checks and the finiteness guarantees for every
 * method.
 */
public interface QuantMethod {
    /** The name users type ({@code --method}) and that shards and reports record. */
    String name();

    /** Whether the method's codes live in [0, maxq] (and {@code --no-clip} means something). */
    boolean clips();

    /** One line for {@code --help} and the docs. */
    String description();

    /** The column order the demo runs it in (RTN: natural, Babai: min-pivot, the GPTQ-based ones: act-order). */
    ColumnOrder preferredOrder();

    /**
     * The method-specific command-line options it takes, beyond {@code --method} and the solver's (order, damping,
     * block size): {@code quantize-layer} refuses the others rather than ignoring them.
     */
    java.util.Set<String> options();

    /** The group size when none is given ({@code commandDefault}: the command's own). */
    default int defaultGroupSize(int commandDefault) {
        return commandDefault;
    }

    /**
     * Rejects options that make no sense for this method (IllegalArgumentException, naming the option): called by
     * {@link MethodSpec}'s constructor, so a bad run fails before anything is read or written.
     */
    void check(QuantGrid.Spec grid, double outlierRate, double targetBits);

    /**
     * Quantizes W [out][in] against H [in][in] (both already validated). {@code backend} runs the GPTQ/Babai pass
     * where the method has a single one (the grid methods); the others run on the CPU.
     */
    QuantResult quantize(String tensor, double[][] w, double[][] h, MethodSpec spec, QuantBackend backend);
}
