package org.babaiquant.cli;

import org.babaiquant.io.NpyWriter;
import org.babaiquant.BadInputException;
import org.babaiquant.core.BackendException;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.Json;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.io.Commit;
import org.babaiquant.io.LocalCommit;
import org.babaiquant.io.Npy;
import org.babaiquant.io.TensorSource;
import org.babaiquant.method.LayerQuantizer;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.method.QuantResult;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/** {@code quantize-layer}: one weight matrix, NumPy in, NumPy and JSON out. */
@Command(name = "quantize-layer", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
                "Quantize one linear layer W [out, in] with GPTQ, Babai's nearest plane or RTN,",
                "or with the no-clipping schemes SSQR (group scales + sparse outliers) and",
                "HPTQ / HRTN (one scale per matrix, Huffman-coded codes).",
                "gptq|babai|rtn write DIR/codes.npy ([out,in]: uint8 when the codes are clipped",
                "to a grid of at most 8 bits, the default; int32 with --no-clip or more bits),",
                "scales.npy (float32",
                "[out,groups], the fp16-rounded scales the pass solved on) and zeros.npy",
                "(float32 [out,groups]), dequant.npy (float32 [out,in]), rows.npy (float64",
                "[out,3]: loss, bound, clipped per row) and report.json. DIR is written",
                "beside it and renamed into place whole; an existing non-empty DIR is refused",
                "without --overwrite.",
                "ssqr|hptq|hrtn write DIR/layer.ssqr|.hptq|.hrtn (the stored layer: SsqrFormat,",
                "HptqFormat), codes.npy (int32 unclipped lattice codes), dequant.npy (float32,",
                "decoded from that file), rows.npy and report.json, whose bits_per_weight is",
                "8 x (bytes of the layer file) / (out x in).",
                "--backend cuda runs GPTQ's factorisation and sweep on the GPU (codes equal to the",
                "CPU solver's except rounding ties); the other methods run on the CPU. Runs",
                "without Spark on the class path (the GPU bundle): java -cp ... org.babaiquant.cli.LayerMain."})
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

    @Mixin
    MethodOptions method = new MethodOptions();

    @Mixin
    BackendOption backend = new BackendOption();

    @Option(names = "--eval", paramLabel = "Xe.npy", description = "held-out inputs: adds eval_rel_error = ‖XeWᵀ−XeQᵀ‖/‖XeWᵀ‖")
    Path eval;

    @Option(names = "--out", required = true, paramLabel = "DIR",
            description = "output directory, committed whole (written beside it, then renamed into place)")
    Path out;

    @Option(names = "--overwrite", description = "replace an existing non-empty --out (default: refuse it)")
    boolean overwrite;

    /** Seconds of the three phases, for the last line (read includes H = XᵀX from --calib; quantize includes --eval). */
    private double readSeconds;
    private double quantizeSeconds;
    private double writeSeconds;

    @Override
    public Integer call() {
        MethodSpec spec = method.spec(MethodOptions.QUANTIZE_LAYER); // every option checked before any file is read
        Path dir = outputDir();
        try (LocalCommit commit = LocalCommit.folder(dir, overwrite ? Commit.IfExists.REPLACE : Commit.IfExists.REFUSE)) {
            QuantResult q = quantize(spec);
            long t0 = System.nanoTime();
            write(commit.temp(), q, uint8Codes(spec, q));
            commit.commit();
            writeSeconds = (System.nanoTime() - t0) / 1e9;
            System.out.println(q.describe());
            if (q instanceof QuantResult.Encoded e) {
                LayerReport rep = q.report();
                System.out.println(String.format(Locale.ROOT,
                        "loss %.6g  bound %.6g  loss/bound %.4f  bound violations %d  %.4f bpw (%d bytes)%s  %.2fs",
                        rep.loss(), rep.bound(), rep.lossOverBound(), rep.boundViolations(), rep.bitsPerWeight, e.bytes().length,
                        Double.isNaN(rep.evalRelError) ? "" : String.format(Locale.ROOT, "  eval rel err %.5f", rep.evalRelError),
                        ((Number) e.summary().get("seconds")).doubleValue()));
            }
        }
        System.out.println(String.format(Locale.ROOT, "wrote %s (read %.2f s, quantize %.2f s, write %.2f s)", dir, readSeconds,
                quantizeSeconds, writeSeconds));
        return 0;
    }

    /** codes.npy is uint8 for a clipped lattice of at most 8 bits (every code in 0..2^bits−1), else int32. */
    static boolean uint8Codes(MethodSpec spec, QuantResult q) {
        return q instanceof QuantResult.Grid && spec.clip() && q.bits() <= 8;
    }

    /** Reads W and X (or H), quantizes through the one path, evaluates on --eval. */
    private QuantResult quantize(MethodSpec spec) {
        long t0 = System.nanoTime();
        // a given H is read on another core while W is (W's errors still come first)
        CompletableFuture<double[][]> hRead = calibration.calib != null ? null
                : CompletableFuture.supplyAsync(() -> Npy.readMatrix(calibration.hessian));
        double[][] w = TensorSource.readMatrix(weight);
        if (w.length == 0) {
            throw new BadInputException(weight + " has no rows: an empty weight cannot be quantized");
        }
        long tokens = -1;
        double[][] h;
        if (calibration.calib != null) {
            float[][] x = Npy.readMatrixF32(calibration.calib);
            if (x.length == 0) {
                throw new BadInputException(calibration.calib + " has no rows: the Hessian needs at least one calibration token");
            }
            if (x[0].length != w[0].length) {
                throw new BadInputException(calibration.calib + " has " + x[0].length + " columns but W ("
                        + weight + ") has " + w[0].length + " input columns");
            }
            HessianAccumulator acc = new HessianAccumulator(x[0].length).add(x);
            h = acc.hessian();
            tokens = acc.tokens();
        } else {
            h = joined(hRead);
        }
        long t1 = System.nanoTime();
        readSeconds = (t1 - t0) / 1e9;
        QuantResult q;
        try {
            q = LayerQuantizer.quantize(weight, w, h, tokens, spec, QuantBackend.select(backend.backend));
        } catch (BackendException e) {
            if (!e.recoverable()) {
                throw e; // a sticky device error: the command fails (exit 1), nothing committed
            }
            // as the quantize stage: out of device memory leaves the device usable; this layer runs on the CPU
            System.err.println("[quantize-layer] " + e.getMessage() + "; quantizing " + weight + " on the CPU instead");
            q = LayerQuantizer.quantize(weight, w, h, tokens, spec, QuantBackend.cpu());
        }
        if (eval != null) {
            LayerQuantizer.evaluate(weight, q, w, Npy.readMatrix(eval), eval.toString());
        }
        quantizeSeconds = (System.nanoTime() - t1) / 1e9;
        return q;
    }

    /** The value of {@code f}, or the exception its computation threw (unwrapped, so exit codes stay as they are). */
    private static <T> T joined(CompletableFuture<T> f) {
        try {
            return f.join();
        } catch (CompletionException e) {
            if (e.getCause() instanceof RuntimeException r) {
                throw r;
            }
            if (e.getCause() instanceof Error err) {
                throw err;
            }
            throw e;
        }
    }

    /** {@code --out} as an absolute folder that is not the file system root and not an existing regular file. */
    private Path outputDir() {
        if (out.toString().isEmpty()) {
            throw new BadInputException("--out is empty: give the output directory");
        }
        Path abs = out.toAbsolutePath().normalize();
        if (abs.getParent() == null || abs.getFileName() == null) {
            throw new BadInputException("--out " + out + " is the root of the file system: give a directory under it");
        }
        if (Files.exists(abs) && !Files.isDirectory(abs)) {
            throw new BadInputException("--out " + out + " exists and is not a directory");
        }
        return abs;
    }

    private static double[][] rowTable(LayerReport rep) {
        double[][] rows = new double[rep.rows][];
        for (int r = 0; r < rep.rows; r++) {
            rows[r] = new double[] {rep.rowLoss[r], rep.rowBound[r], rep.rowClipped[r]};
        }
        return rows;
    }

    /** The files of the result's stored form, into {@code dir} (the commit's temporary folder). */
    private static void write(Path dir, QuantResult q, boolean uint8Codes) {
        LayerReport rep = q.report();
        Map<String, Object> json = new LinkedHashMap<>(q.summary());
        json.put("row_loss", rep.rowLoss);
        json.put("row_bound", rep.rowBound);
        json.put("row_clipped", rep.rowClipped);
        try {
            if (q instanceof QuantResult.Encoded e) {
                Files.write(dir.resolve("layer." + e.method()), e.bytes());
            } else {
                NpyWriter.writeF32(dir.resolve("scales.npy"), q.lattice().grid().scale);
                NpyWriter.writeF32(dir.resolve("zeros.npy"), q.lattice().grid().zero);
            }
            // the two large files on two cores
            CompletableFuture<Void> codes = CompletableFuture.runAsync(
                    () -> {
                        if (uint8Codes) {
                            NpyWriter.writeU8(dir.resolve("codes.npy"), q.lattice().codes());
                        } else {
                            NpyWriter.writeI32(dir.resolve("codes.npy"), q.lattice().codes());
                        }
                    });
            NpyWriter.writeF32(dir.resolve("dequant.npy"), q.dequant());
            joined(codes);
            NpyWriter.writeF64(dir.resolve("rows.npy"), rowTable(rep));
            Files.writeString(dir.resolve("report.json"), Json.write(json), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + dir + ": " + e.getMessage(), e);
        }
    }
}
