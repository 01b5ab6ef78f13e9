package org.babaiquant.cli;

import org.babaiquant.nonclip.Hptq;
import org.babaiquant.nonclip.HptqFormat;
import org.babaiquant.nonclip.HptqLayer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.concurrent.Callable;

/**
 * {@code bench-huffman}: times writing an HPTQ layer and, what inference needs, decoding it back to float32, on a
 * matrix of LLM size. The codes are those of Gaussian weights rounded on the scale whose Gaussian entropy is the
 * target ({@code s = √(2πe)·2^−B}), which is the shape HPTQ's codes have; a timed run is checked once against the
 * plain {@code code·scale} product so that a fast wrong decoder cannot pass.
 */
@Command(name = "bench-huffman", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Benchmark HPTQ/HRTN storage: canonical Huffman encode and table-driven decode to",
                "float32 of a ROWSxCOLS matrix (default 4096x11008, a 7B-model MLP projection),",
                "single-threaded. decode_s is the best of --repeats runs of",
                "HptqFormat.dequantize (stored bytes -> float32[rows*cols])."})
public final class BenchHuffmanCommand implements Callable<Integer> {
    @Option(names = "--size", defaultValue = "4096x11008", description = "ROWSxCOLS (default: ${DEFAULT-VALUE})")
    String size;

    @Option(names = "--targets", split = ",", defaultValue = "2.125,3.125,4.125",
            description = "code entropies to generate, bits per weight (default: ${DEFAULT-VALUE})")
    List<Double> targets;

    @Option(names = "--repeats", defaultValue = "5", description = "decode runs per target (default: ${DEFAULT-VALUE})")
    int repeats;

    @Option(names = "--markdown", paramLabel = "FILE", description = "also write the table as Markdown")
    Path markdown;

    @Override
    public Integer call() {
        String[] rc = size.toLowerCase(Locale.ROOT).split("x");
        if (rc.length != 2) {
            throw new IllegalArgumentException("--size must be ROWSxCOLS, got " + size);
        }
        int rows = Integer.parseInt(rc[0].trim());
        int cols = Integer.parseInt(rc[1].trim());
        if (rows < 1 || cols < 1 || (long) rows * cols > Integer.MAX_VALUE - 8 || repeats < 1) {
            throw new IllegalArgumentException("need rows, cols ≥ 1 with rows·cols < 2^31 and repeats ≥ 1");
        }
        String machine = String.format(Locale.ROOT, "%s, %d cores, Java %s, max heap %.1f GiB",
                System.getProperty("os.arch"), Runtime.getRuntime().availableProcessors(),
                System.getProperty("java.version"), Runtime.getRuntime().maxMemory() / (double) (1L << 30));
        System.out.println("machine: " + machine);
        List<String> md = new ArrayList<>();
        md.add("machine: " + machine);
        md.add("");
        md.add("| matrix | bits/weight | stored MB | symbols | encode s | decode to float32 s | ns/weight | Mweights/s |");
        md.add("|---|---|---|---|---|---|---|---|");
        System.out.println(String.format(Locale.ROOT, "%-11s %8s %10s %8s %9s %9s %10s %11s", "matrix", "bpw",
                "stored_MB", "symbols", "encode_s", "decode_s", "ns/weight", "Mweights/s"));
        Random rnd = new Random(42);
        long n = (long) rows * cols;
        for (double target : targets) {
            double scale = Math.sqrt(2 * Math.PI * Math.E) * Math.pow(2, -target);
            int[] codes = new int[(int) n];
            for (int i = 0; i < codes.length; i++) {
                codes[i] = (int) Math.rint(rnd.nextGaussian() / scale);
            }
            HptqLayer layer = new HptqLayer(Hptq.Kind.HRTN, rows, cols, (float) scale, codes);
            long t0 = System.nanoTime();
            byte[] bytes = HptqFormat.write(layer);
            double encode = (System.nanoTime() - t0) / 1e9;
            double best = Double.POSITIVE_INFINITY;
            float[] out = null;
            for (int rep = 0; rep < repeats; rep++) {
                out = null; // let the previous output go before allocating the next
                t0 = System.nanoTime();
                out = HptqFormat.dequantize(bytes);
                best = Math.min(best, (System.nanoTime() - t0) / 1e9);
            }
            if (!Arrays.equals(out, layer.dequantize())) {
                throw new IllegalStateException("decoded weights differ from code·scale: the decoder is wrong");
            }
            double bpw = 8.0 * bytes.length / n;
            int symbols = HptqFormat.Histogram.of(codes).freq().length;
            String label = rows + "x" + cols;
            System.out.println(String.format(Locale.ROOT, "%-11s %8.4f %10.2f %8d %9.3f %9.3f %10.2f %11.1f", label, bpw,
                    bytes.length / 1e6, symbols, encode, best, best * 1e9 / n, n / best / 1e6));
            md.add(String.format(Locale.ROOT, "| %s | %.4f | %.2f | %d | %.3f | %.3f | %.2f | %.1f |", label, bpw,
                    bytes.length / 1e6, symbols, encode, best, best * 1e9 / n, n / best / 1e6));
        }
        if (markdown != null) {
            try {
                Files.write(markdown, md);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            System.out.println("wrote " + markdown);
        }
        return 0;
    }
}
