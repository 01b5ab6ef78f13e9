package org.babaiquant.cli;

import org.babaiquant.BadInputException;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.io.Npy;
import org.babaiquant.io.TensorSource;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.concurrent.Callable;

/** {@code quantize-layer}: one weight matrix, NumPy in, NumPy and JSON out. */
@Command(name = "quantize-layer", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
                "Quantize one linear layer W [out, in] with GPTQ, Babai's nearest plane or RTN.",
                "Writes DIR/codes.npy (int32 [out,in]), scales.npy and zeros.npy (float32 [out,groups]),",
                "dequant.npy (float32 [out,in]), rows.npy (float64 [out,3]: loss, bound, clipped per row) and",
                "report.json (written last: a directory without it is incomplete)."})
public final class QuantizeLayerCommand implements Callable<Integer> {
    @Option(names = "--weight", required = true, paramLabel = "SPEC",
            description = "W [out, in]: FILE.npy (float32/float64) or FILE.safetensors:tensor.name (F32/F16/BF16)")
    String weight;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Calibration calibration;

    static final class Calibration {
        @Option(names = "--calib", paramLabel = "X.npy", description = "calibration inputs X [tokens, in]; H = XᵀX (float64 sum)")
        Path calib;

        @Option(names = "--hessian", paramLabel = "H.npy", description = "a Hessian [in, in] given directly")
        Path hessian;
    }

    @Option(names = "--method", defaultValue = "gptq", description = "gptq | babai | rtn (default: ${DEFAULT-VALUE})")
    String method;

    @Option(names = "--bits", defaultValue = "4", description = "2..8 (default: ${DEFAULT-VALUE})")
    int bits;

    @Option(names = "--group-size", defaultValue = "-1", description = "input columns per scale; -1 = one per row (default: ${DEFAULT-VALUE})")
    int groupSize;

    @ArgGroup(exclusive = true)
    Symmetry symmetry;

    static final class Symmetry {
        @Option(names = "--sym", description = "symmetric grid (zero point (maxq+1)/2)")
        boolean sym;

        @Option(names = "--asym", description = "asymmetric min-max grid (default)")
        boolean asym;
    }

    @Option(names = "--mse", description = "MSE shrink search of each group's range (off by default)")
    boolean mse;

    @Option(names = "--order", defaultValue = "natural",
            description = "natural | reverse | act-order | min-pivot (default: ${DEFAULT-VALUE})")
    String order;

    @Option(names = "--no-clip", description = "keep integer codes outside [0, maxq] (the lattice point itself)")
    boolean noClip;

    @Option(names = "--damp", defaultValue = "0.01", description = "λ = damp · mean(diag H), escalated ×10 on failure (default: ${DEFAULT-VALUE})")
    double damp;

    @Option(names = "--block-size", defaultValue = "128", description = "GPTQ lazy-update block (default: ${DEFAULT-VALUE})")
    int blockSize;

    @Option(names = "--max-damp-tries", defaultValue = "6", description = "damping escalations before giving up (default: ${DEFAULT-VALUE})")
    int maxDampTries;

    @Option(names = "--eval", paramLabel = "Xe.npy", description = "held-out inputs: adds eval_rel_error = ‖XeWᵀ−XeQᵀ‖/‖XeWᵀ‖")
    Path eval;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "output directory")
    Path out;

    @Override
    public Integer call() {
        GptqSolver.Options opt = options();
        double[][] w = TensorSource.readMatrix(weight);
        long tokens = -1;
        double[][] h;
        if (calibration.calib != null) {
            float[][] x = Npy.readMatrixF32(calibration.calib);
            if (x[0].length != w[0].length) {
                throw new BadInputException(calibration.calib + " has " + x[0].length + " columns but W ("
                        + weight + ") has " + w[0].length + " input columns");
            }
            HessianAccumulator acc = new HessianAccumulator(x[0].length).add(x);
            h = acc.hessian();
            tokens = acc.tokens();
        } else {
            h = Npy.readMatrix(calibration.hessian);
        }
        QuantizedLayer q = GptqSolver.quantize(w, h, opt);
        LayerReport rep = q.report();
        rep.tokens = tokens;
        if (eval != null) {
            rep.evalRelError = GptqSolver.relativeOutputError(Npy.readMatrix(eval), w, q.dequant());
        }
        write(q);
        System.out.println(rep.oneLine());
        System.out.println("wrote " + out.toAbsolutePath());
        return 0;
    }

    GptqSolver.Options options() {
        boolean sym = symmetry != null && symmetry.sym;
        return new GptqSolver.Options(Method.parse(method), new QuantGrid.Spec(bits, groupSize, sym, mse),
                ColumnOrder.parse(order), !noClip, damp, blockSize, maxDampTries);
    }

    /** All files go to a temporary sibling directory first, then move in; report.json moves last. */
    private void write(QuantizedLayer q) {
        try {
            Path abs = out.toAbsolutePath();
            Files.createDirectories(abs.getParent());
            Path tmp = Files.createTempDirectory(abs.getParent(), "." + abs.getFileName() + ".partial-");
            LayerReport rep = q.report();
            Npy.writeI32(tmp.resolve("codes.npy"), q.codes());
            Npy.writeF32(tmp.resolve("scales.npy"), q.grid().scale);
            Npy.writeF32(tmp.resolve("zeros.npy"), q.grid().zero);
            Npy.writeF32(tmp.resolve("dequant.npy"), q.dequant());
            double[][] rows = new double[rep.rows][];
            for (int r = 0; r < rep.rows; r++) {
                rows[r] = new double[] {rep.rowLoss[r], rep.rowBound[r], rep.rowClipped[r]};
            }
            Npy.writeF64(tmp.resolve("rows.npy"), rows);
            Files.writeString(tmp.resolve("report.json"), rep.toJson(), StandardCharsets.UTF_8);
            Files.createDirectories(abs);
            Files.deleteIfExists(abs.resolve("report.json"));
            for (String f : new String[] {"codes.npy", "scales.npy", "zeros.npy", "dequant.npy", "rows.npy", "report.json"}) {
                Files.move(tmp.resolve(f), abs.resolve(f), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            }
            Files.delete(tmp);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + out + ": " + e.getMessage(), e);
        }
    }
}
