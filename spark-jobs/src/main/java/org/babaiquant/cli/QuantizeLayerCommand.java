package org.babaiquant.cli;

import org.babaiquant.BadInputException;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.Json;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.io.Npy;
import org.babaiquant.io.TensorSource;
import org.babaiquant.nonclip.HptqFormat;
import org.babaiquant.nonclip.HptqLayer;
import org.babaiquant.nonclip.Hptq;
import org.babaiquant.nonclip.Ssqr;
import org.babaiquant.nonclip.SsqrFormat;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code quantize-layer}: one weight matrix, NumPy in, NumPy and JSON out. */
@Command(name = "quantize-layer", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
                "Quantize one linear layer W [out, in] with GPTQ, Babai's nearest plane or RTN,",
                "or with the no-clipping schemes SSQR (group scales + sparse outliers) and",
                "HPTQ / HRTN (one scale per matrix, Huffman-coded codes).",
                "gptq|babai|rtn write DIR/codes.npy (int32 [out,in]), scales.npy and zeros.npy",
                "(float32 [out,groups]), dequant.npy (float32 [out,in]), rows.npy (float64",
                "[out,3]: loss, bound, clipped per row) and report.json (written last: a",
                "directory without it is incomplete).",
                "ssqr|hptq|hrtn write DIR/layer.ssqr|.hptq|.hrtn (the stored layer: SsqrFormat,",
                "HptqFormat), codes.npy (int32 unclipped lattice codes), dequant.npy (float32,",
                "decoded from that file), rows.npy and report.json, whose bits_per_weight is",
                "8 x (bytes of the layer file) / (out x in)."})
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

    @Option(names = "--method", defaultValue = "gptq",
            description = "gptq | babai | rtn | ssqr | hptq | hrtn (default: ${DEFAULT-VALUE})")
    String method;

    @Option(names = "--bits", description = "2..8 (default: 4); not for hptq/hrtn")
    Integer bits;

    @Option(names = "--group-size",
            description = "input columns per scale; -1 = one per row (default: -1, and 128 for ssqr); not for hptq/hrtn")
    Integer groupSize;

    @Option(names = "--outlier-rate", paramLabel = "R",
            description = "ssqr: target fraction of weights stored as outliers (default: " + Ssqr.DEFAULT_OUTLIER_RATE + ")")
    Double outlierRate;

    @Option(names = "--target-bits", paramLabel = "B",
            description = "hptq/hrtn (required): bits per weight of the stored layer, table and scale included, e.g. 3.125")
    Double targetBits;

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
        String scheme = method.toLowerCase(Locale.ROOT);
        boolean nonClip = NON_CLIP.contains(scheme);
        checkOptions(scheme);
        GptqSolver.Options opt = nonClip ? baseOptions() : options();
        // the schemes' own options are validated before any file is read
        Ssqr.Options ssqr = scheme.equals("ssqr") ? Ssqr.Options.of(bits == null ? 4 : bits,
                groupSize == null ? Ssqr.DEFAULT_GROUP_SIZE : groupSize,
                outlierRate == null ? Ssqr.DEFAULT_OUTLIER_RATE : outlierRate, opt) : null;
        Hptq.Options hptq = nonClip && ssqr == null ? Hptq.Options.of(scheme.equals("hptq") ? Hptq.Kind.HPTQ
                : Hptq.Kind.HRTN, targetBits, opt) : null;
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
        if (nonClip) {
            return nonClip(scheme, ssqr, hptq, w, h, tokens);
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
        Method m;
        try {
            m = Method.parse(method);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("unknown method '" + method + "': expected gptq, babai, rtn, ssqr, hptq or hrtn");
        }
        return new GptqSolver.Options(m, new QuantGrid.Spec(bits == null ? 4 : bits, groupSize == null ? -1 : groupSize,
                sym, mse), ColumnOrder.parse(order), !noClip, damp, blockSize, maxDampTries);
    }

    private static final List<String> NON_CLIP = List.of("ssqr", "hptq", "hrtn");

    /** Options that belong to another method are an error, not silently ignored. */
    private void checkOptions(String scheme) {
        boolean huffman = scheme.equals("hptq") || scheme.equals("hrtn");
        if (outlierRate != null && !scheme.equals("ssqr")) {
            throw new IllegalArgumentException("--outlier-rate applies to --method ssqr only");
        }
        if (targetBits != null && !huffman) {
            throw new IllegalArgumentException("--target-bits applies to --method hptq or hrtn only");
        }
        if (huffman) {
            if (targetBits == null) {
                throw new IllegalArgumentException("--method " + scheme + " needs --target-bits B (e.g. 3.125)");
            }
            if (bits != null || groupSize != null || symmetry != null || mse) {
                throw new IllegalArgumentException("--bits, --group-size, --sym/--asym and --mse do not apply to "
                        + scheme + ": it has one scale per matrix and unbounded codes, sized by --target-bits");
            }
        }
        if (scheme.equals("ssqr") && symmetry != null && symmetry.sym) {
            throw new IllegalArgumentException("ssqr uses the asymmetric MSE grid; --sym does not apply");
        }
    }

    /** Order, damping and block size for the no-clipping schemes; they set method, grid and clipping themselves. */
    private GptqSolver.Options baseOptions() {
        GptqSolver.Options d = GptqSolver.Options.defaults();
        return new GptqSolver.Options(d.method(), d.grid(), ColumnOrder.parse(order), false, damp, blockSize,
                maxDampTries);
    }

    /** SSQR ({@code ssqr != null}) or HPTQ/HRTN: quantize, store, decode what was stored, report. */
    private int nonClip(String scheme, Ssqr.Options ssqr, Hptq.Options hptq, double[][] w, double[][] h, long tokens) {
        byte[] bytes;
        QuantizedLayer lattice;
        float[] dequant;
        Map<String, Object> summary;
        String line;
        double seconds;
        if (ssqr != null) {
            Ssqr.Result r = Ssqr.quantize(w, h, ssqr);
            bytes = r.bytes();
            lattice = r.lattice();
            dequant = SsqrFormat.read(bytes).dequantize();
            line = String.format(Locale.ROOT, "ssqr %s %d-bit g%d: outliers %.4f%% (target %.4f%%), scale multiplier %.5f"
                            + " after %d GPTQ passes%s", ssqr.gptq().order(), r.layer().bits(), r.layer().groupSize(),
                    100 * r.density(), 100 * r.outlierRate(), r.multiplier(), r.evaluations(),
                    r.inBand() ? "" : " (density could not be brought into the 5% band)");
            seconds = r.seconds();
            summary = r.summary();
        } else {
            Hptq.Result r = Hptq.quantize(w, h, hptq);
            bytes = r.bytes();
            lattice = r.lattice();
            dequant = HptqFormat.dequantize(bytes);
            line = String.format(Locale.ROOT, "%s %s: scale %.6g, codes %s, target %.4f bpw after %d passes%s",
                    scheme, hptq.gptq().order(), (double) r.layer().scale(), codeRange(r.layer()), targetBits,
                    r.evaluations(), r.inBand() ? "" : " (size could not be brought into the band)");
            seconds = r.seconds();
            summary = r.summary();
        }
        LayerReport rep = lattice.report();
        rep.tokens = tokens;
        int cols = w[0].length;
        double[][] dq = new double[w.length][cols];
        for (int i = 0; i < dequant.length; i++) {
            dq[i / cols][i % cols] = dequant[i];
        }
        if (eval != null) {
            rep.evalRelError = GptqSolver.relativeOutputError(Npy.readMatrix(eval), w, dq);
            summary.put("eval_rel_error", rep.evalRelError);
        }
        summary.put("tokens", tokens);
        Map<String, Object> json = new LinkedHashMap<>(summary);
        json.put("row_loss", rep.rowLoss);
        json.put("row_bound", rep.rowBound);
        json.put("row_clipped", rep.rowClipped);
        String layerFile = "layer." + scheme;
        publish(tmp -> {
            Files.write(tmp.resolve(layerFile), bytes);
            Npy.writeI32(tmp.resolve("codes.npy"), lattice.codes());
            Npy.writeF32(tmp.resolve("dequant.npy"), new int[] {w.length, cols}, dequant);
            Npy.writeF64(tmp.resolve("rows.npy"), rowTable(rep));
            Files.writeString(tmp.resolve("report.json"), Json.write(json), StandardCharsets.UTF_8);
        }, layerFile, "codes.npy", "dequant.npy", "rows.npy", "report.json");
        System.out.println(line);
        System.out.println(String.format(Locale.ROOT,
                "loss %.6g  bound %.6g  loss/bound %.4f  bound violations %d  %.4f bpw (%d bytes)%s  %.2fs",
                rep.loss(), rep.bound(), rep.lossOverBound(), rep.boundViolations(), rep.bitsPerWeight, bytes.length,
                Double.isNaN(rep.evalRelError) ? "" : String.format(Locale.ROOT, "  eval rel err %.5f", rep.evalRelError),
                seconds));
        System.out.println("wrote " + out.toAbsolutePath());
        return 0;
    }

    private static String codeRange(HptqLayer layer) {
        HptqFormat.Histogram hist = HptqFormat.Histogram.of(layer.codes());
        return hist.minCode() + ".." + (hist.minCode() + hist.freq().length - 1);
    }

    private static double[][] rowTable(LayerReport rep) {
        double[][] rows = new double[rep.rows][];
        for (int r = 0; r < rep.rows; r++) {
            rows[r] = new double[] {rep.rowLoss[r], rep.rowBound[r], rep.rowClipped[r]};
        }
        return rows;
    }

    private interface Writer {
        void writeAll(Path tmp) throws IOException;
    }

    /**
     * Writes the files into a temporary sibling directory, then moves them in; report.json must be the last name, so
     * that a directory with a report.json is complete.
     */
    private void publish(Writer writer, String... names) {
        try {
            Path abs = out.toAbsolutePath();
            Files.createDirectories(abs.getParent());
            Path tmp = Files.createTempDirectory(abs.getParent(), "." + abs.getFileName() + ".partial-");
            writer.writeAll(tmp);
            Files.createDirectories(abs);
            Files.deleteIfExists(abs.resolve("report.json"));
            for (String f : names) {
                Files.move(tmp.resolve(f), abs.resolve(f), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            }
            Files.delete(tmp);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + out + ": " + e.getMessage(), e);
        }
    }

    /** All files go to a temporary sibling directory first, then move in; report.json moves last. */
    private void write(QuantizedLayer q) {
        LayerReport rep = q.report();
        publish(tmp -> {
            Npy.writeI32(tmp.resolve("codes.npy"), q.codes());
            Npy.writeF32(tmp.resolve("scales.npy"), q.grid().scale);
            Npy.writeF32(tmp.resolve("zeros.npy"), q.grid().zero);
            Npy.writeF32(tmp.resolve("dequant.npy"), q.dequant());
            Npy.writeF64(tmp.resolve("rows.npy"), rowTable(rep));
            Files.writeString(tmp.resolve("report.json"), rep.toJson(), StandardCharsets.UTF_8);
        }, "codes.npy", "scales.npy", "zeros.npy", "dequant.npy", "rows.npy", "report.json");
    }
}
