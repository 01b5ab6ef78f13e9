package org.babaiquant.onnx;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.babaiquant.BadInputException;
import org.babaiquant.spark.ActivationLayout;
import org.babaiquant.spark.LayerMap;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.UUID;
import java.util.function.Consumer;

/**
 * The capture stage: runs an ONNX encoder with ONNX Runtime on real text and writes the input of every linear layer as
 * activation tiles in the {@link ActivationLayout} (what {@code import-activations} writes and the Hessian stage reads).
 *
 * <p>Per paragraph (in order): tokenize ({@link WordPieceTokenizer}, truncated to {@code maxLen}), run alone (batch 1,
 * no padding) with the linears' input tensors added as graph outputs and ORT optimizations off, pick
 * {@code rowsPerSeq} token positions (all when ≤ 0) with a seeded {@link Random} (the same draw as the bundled data's
 * extractor: a partial Fisher–Yates shuffle, then sorted), and append those rows to each site. A sequence's rows form
 * its own tiles (at most 64 rows each), {@code sample_id} = the paragraph's index, so tiles never mix sequences.
 *
 * <p>Sites: linears reading the same tensor share one site (q/k/v), named by the default layer map for the first such
 * linear's MatMul node name ({@code layer0_attn_in}, … for BERT exports), else the sanitised tensor name (then pass
 * {@code --map} rules to the quantize stage). Sites are written under {@code OUT/_tmp-capture-*} and renamed into place
 * when all are complete.
 */
public final class ActivationCapture {

    /** What to capture. {@code samples} ≤ 0: every paragraph; {@code rowsPerSeq} ≤ 0: every token position. */
    public record Config(java.nio.file.Path onnx, java.nio.file.Path tokenizer, List<java.nio.file.Path> text, String out,
                         int samples, int maxLen, long seed, int rowsPerSeq, boolean overwrite) {
        public Config {
            if (maxLen < 2 || maxLen > 512) {
                throw new BadInputException("--max-len must be in 2..512 (the model's positions), got " + maxLen);
            }
        }
    }

    /** One input site: the tensor it is, its width, the linears (MatMul node names) reading it. */
    public record Site(String name, String tensor, int dim, List<String> linears) {}

    /** Per site: tokens and tiles written. {@code rows}: (sequence, position, token id) of every captured row. */
    public record Result(List<Site> sites, Map<String, Long> tokens, int sequences, List<int[]> rows) {}

    private ActivationCapture() {}

    /** The sites of a model, in graph order of their first linear. */
    public static List<Site> sites(OnnxModel model) {
        LayerMap defaults = LayerMap.of(List.of(), null, true);
        Map<String, List<OnnxModel.Linear>> byTensor = new LinkedHashMap<>();
        for (OnnxModel.Linear l : model.requireLinears()) {
            byTensor.computeIfAbsent(l.input(), k -> new ArrayList<>()).add(l);
        }
        List<Site> sites = new ArrayList<>();
        List<String> taken = new ArrayList<>();
        for (Map.Entry<String, List<OnnxModel.Linear>> e : byTensor.entrySet()) {
            List<OnnxModel.Linear> ls = e.getValue();
            String name = defaults.siteOf(ls.get(0).name());
            for (OnnxModel.Linear l : ls) {
                String s = defaults.siteOf(l.name());
                if (name != null && !name.equals(s)) {
                    name = null; // the map disagrees with the graph: fall back to the tensor's own name
                }
            }
            if (name == null || taken.contains(name)) {
                name = e.getKey().replaceAll("[^A-Za-z0-9._-]+", "_").replaceAll("^_+|_+$", "");
            }
            taken.add(name);
            sites.add(new Site(name, e.getKey(), ls.get(0).in(), ls.stream().map(OnnxModel.Linear::name).toList()));
        }
        return sites;
    }

    /** Runs the capture; {@code progress} gets a line every 50 paragraphs. */
    public static Result run(Configuration conf, Config cfg, Consumer<String> progress) {
        OnnxModel model = OnnxModel.read(cfg.onnx());
        List<Site> sites = sites(model);
        WordPieceTokenizer tok = WordPieceTokenizer.read(cfg.tokenizer());
        List<String> paragraphs = Paragraphs.read(cfg.text(), cfg.samples());
        byte[] bytes;
        try {
            byte[] base = Files.readAllBytes(cfg.onnx());
            byte[] extra = OnnxModel.extraOutputs(sites.stream().map(Site::tensor).toList());
            bytes = Arrays.copyOf(base, base.length + extra.length);
            System.arraycopy(extra, 0, bytes, base.length, extra.length);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + cfg.onnx() + ": " + e.getMessage(), e);
        }
        Path out = new Path(cfg.out());
        Path tmp = new Path(out, "_tmp-capture-" + UUID.randomUUID());
        Random rng = new Random(cfg.seed());
        List<int[]> rows = new ArrayList<>();
        Map<String, Long> tokens = new LinkedHashMap<>();
        try {
            FileSystem fs = out.getFileSystem(conf);
            for (Site s : sites) {
                Path dst = new Path(out, ActivationLayout.siteDir(s.name()));
                if (fs.exists(dst) && !cfg.overwrite()) {
                    throw new BadInputException(dst + " already exists: choose another --out or pass --overwrite");
                }
            }
            String label = cfg.onnx().getFileName().toString();
            Map<String, ActivationLayout.Writer> writers = new LinkedHashMap<>();
            long[] tiles = new long[sites.size()];
            try (OnnxRunner runner = new OnnxRunner(cfg.onnx().toString(), bytes, false)) {
                try {
                    for (Site s : sites) {
                        writers.put(s.name(), new ActivationLayout.Writer(conf, new Path(new Path(tmp, ActivationLayout.siteDir(s.name())),
                                "part-00000-capture.parquet"), s.name(), label + ":" + s.tensor(), s.dim(), "f32"));
                        tokens.put(s.name(), 0L);
                    }
                    List<String> names = sites.stream().map(Site::tensor).toList();
                    for (int seq = 0; seq < paragraphs.size(); seq++) {
                        int[] ids = tok.encode(paragraphs.get(seq), cfg.maxLen());
                        int t = ids.length;
                        int[] pos = pickRows(rng, t, cfg.rowsPerSeq() <= 0 ? t : Math.min(t, cfg.rowsPerSeq()));
                        Map<String, float[]> acts = runner.run(ids, names);
                        for (int k = 0; k < sites.size(); k++) {
                            Site s = sites.get(k);
                            float[] v = acts.get(s.tensor());
                            if (v.length != t * s.dim()) {
                                throw new BadInputException(cfg.onnx() + ": tensor " + s.tensor() + " has " + v.length
                                        + " values for " + t + " tokens, not " + t + "×" + s.dim());
                            }
                            for (int r0 = 0; r0 < pos.length; r0 += ActivationLayout.MAX_TILE_ROWS) {
                                int n = Math.min(ActivationLayout.MAX_TILE_ROWS, pos.length - r0);
                                ByteBuffer b = ByteBuffer.allocate(4 * n * s.dim()).order(ByteOrder.LITTLE_ENDIAN);
                                for (int i = 0; i < n; i++) {
                                    b.asFloatBuffer().put(i * s.dim(), v, pos[r0 + i] * s.dim(), s.dim());
                                }
                                writers.get(s.name()).write(tiles[k]++, seq, n, b.array());
                            }
                            tokens.merge(s.name(), (long) pos.length, Long::sum);
                        }
                        for (int p : pos) {
                            rows.add(new int[] {seq, p, ids[p]});
                        }
                        if ((seq + 1) % 50 == 0 || seq + 1 == paragraphs.size()) {
                            progress.accept("[capture] " + (seq + 1) + "/" + paragraphs.size() + " paragraphs, "
                                    + rows.size() + " rows per site");
                        }
                    }
                } finally {
                    for (ActivationLayout.Writer w : writers.values()) {
                        w.close();
                    }
                }
                for (Site s : sites) {
                    Path dst = new Path(out, ActivationLayout.siteDir(s.name()));
                    if (fs.exists(dst)) {
                        fs.delete(dst, true);
                    }
                    if (!fs.rename(new Path(tmp, ActivationLayout.siteDir(s.name())), dst)) {
                        throw new IOException("rename to " + dst + " failed");
                    }
                }
            } finally {
                fs.delete(tmp, true);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + cfg.out() + ": " + e.getMessage(), e);
        }
        return new Result(sites, tokens, paragraphs.size(), rows);
    }

    /**
     * {@code take} distinct positions of 0..t−1, sorted: the first {@code take} steps of a Fisher–Yates shuffle. The
     * bundled data's extractor draws the same way, so the same seed and text give the same positions.
     */
    static int[] pickRows(Random rng, int t, int take) {
        int[] perm = new int[t];
        for (int i = 0; i < t; i++) {
            perm[i] = i;
        }
        for (int i = 0; i < take; i++) {
            int j = i + rng.nextInt(t - i);
            int x = perm[i];
            perm[i] = perm[j];
            perm[j] = x;
        }
        int[] pos = Arrays.copyOf(perm, take);
        Arrays.sort(pos);
        return pos;
    }
}
