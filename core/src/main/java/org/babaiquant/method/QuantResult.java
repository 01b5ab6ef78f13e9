package org.babaiquant.method;

import org.babaiquant.core.GptqPacking;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.QuantizedLayer;

import java.util.Map;
import java.util.function.Supplier;

/**
 * One quantized layer as a method produced it: its stored form, the lattice pass behind it (codes in the original
 * column order, grid, processing order) and the error report of that pass, whose {@code bitsPerWeight} is measured
 * from the stored form. Two stored forms exist:
 * <ul>
 *   <li>{@link Grid}: integer codes, fp16 scales, integer zero points and the processing order (GPTQ-packed when
 *       {@link GptqPacking#packable} allows, else int32), as rtn, gptq and babai store them;</li>
 *   <li>{@link Encoded}: the method's own versioned binary format (SsqrFormat, HptqFormat), as ssqr, hptq and hrtn
 *       store them.</li>
 * </ul>
 */
public sealed interface QuantResult permits QuantResult.Grid, QuantResult.Encoded {
    /** The registry name of the method that made it. */
    String method();

    /** The GPTQ/Babai/RTN pass behind the stored form. */
    QuantizedLayer lattice();

    default LayerReport report() {
        return lattice().report();
    }

    /** The stored layer decoded: what a model using it computes with. */
    double[][] dequant();

    /** Bits per weight of the stored form. */
    default double bitsPerWeight() {
        return report().bitsPerWeight;
    }

    /** Grid bits as the shards record them. */
    int bits();

    /** Group size as the shards record them (−1 = one group per row). */
    int groupSize();

    /** report.json's figures, without the per-row arrays (read when called: the caller may have added tokens/eval). */
    Map<String, Object> summary();

    /** One human-readable line. */
    String describe();

    /**
     * Codes + scales + zeros + perm. The scales are the fp16-rounded lattice the pass solved on
     * ({@link LatticeMethod#storedGrid}), so storing them as fp16 loses nothing and {@link #dequant()} is exact.
     *
     * @param groupSize the group size as requested (−1 = per row); the grid holds the resolved one
     */
    record Grid(String method, QuantizedLayer lattice, int groupSize) implements QuantResult {
        @Override
        public double[][] dequant() {
            return lattice.dequant();
        }

        @Override
        public int bits() {
            return lattice.grid().bits;
        }

        /** Whether the codes of rows {@code [r0, r0 + n)} go into the GPTQ {@code qweight} packing. */
        public boolean packable(int[][] rowCodes) {
            return GptqPacking.packable(rowCodes, lattice.grid().cols, lattice.grid().bits);
        }

        @Override
        public Map<String, Object> summary() {
            return report().summary();
        }

        @Override
        public String describe() {
            return report().oneLine();
        }
    }

    /**
     * The method's own binary format. {@code bits}/{@code groupSize} are what the shards record (ssqr: the inlier grid
     * chosen; hptq/hrtn: as requested, since they have one scale and unbounded codes).
     */
    record Encoded(String method, int bits, int groupSize, byte[] bytes, QuantizedLayer lattice, double[][] dequant,
                   Supplier<Map<String, Object>> summarySource, String describe) implements QuantResult {
        @Override
        public Map<String, Object> summary() {
            return summarySource.get();
        }

        /** {@code 8 · bytes / (rows · cols)}, the whole file (tables and scales included). */
        @Override
        public double bitsPerWeight() {
            return 8.0 * bytes.length / ((double) dequant.length * dequant[0].length);
        }
    }
}
