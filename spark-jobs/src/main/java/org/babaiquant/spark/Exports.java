package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.babaiquant.BadInputException;
import org.babaiquant.core.Json;
import org.babaiquant.io.Commit;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.io.SafeTensorsWriter;
import org.babaiquant.method.Methods;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.AbstractMap;
import java.util.AbstractSet;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The export formats of a quantize output, in one place for {@code export} and the pipeline's export stage, and what
 * they share: reading the reports, writing one output shard per model shard (quantized layers replaced by the
 * format's tensors, every other tensor copied byte for byte), the self-check, and the commit.
 *
 * <p><b>Commit.</b> An export is one {@link HadoopCommit} folder unit: everything is written under a hidden
 * {@code _tmp-OUT-UUID} sibling, read back and checked there, then renamed into place with {@code _SUCCESS} written
 * last (on S3 a rename copies object by object: a folder without {@code _SUCCESS} is incomplete, whatever it holds).
 * On any failure the temporary is deleted and an existing export is left as it was; a rerun deletes the temporaries
 * a killed run left. The output may not be, or hold, the model or the quantize output (it is replaced whole).
 */
public final class Exports {
    /** {@code gptq}: {@link GptqExport}; {@code compressed-tensors}: {@link CompressedTensorsExport} (vLLM's native format). */
    public static final List<String> FORMATS = List.of("gptq", "compressed-tensors");

    private Exports() {}

    /**
     * Writes the export and returns its one-line description (the self-check has passed when it returns).
     * {@code gIdx}: compressed-tensors only, declare actorder "group" and write weight_g_idx. {@code ifExists}: what to
     * do with a non-empty {@code out} (the {@code export} command refuses it unless {@code --overwrite}; the pipeline
     * replaces its own export).
     */
    public static String export(Configuration conf, String format, String quantized, String model, String out, boolean gIdx,
                                Commit.IfExists ifExists) {
        switch (format) {
            case "gptq" -> {
                if (gIdx) {
                    throw new BadInputException("--g-idx is an option of the compressed-tensors format (the GPTQ checkpoint always has g_idx)");
                }
                return GptqExport.describe(GptqExport.export(conf, quantized, model, out, ifExists));
            }
            case "compressed-tensors" -> {
                return CompressedTensorsExport.describe(CompressedTensorsExport.export(conf, quantized, model, out, gIdx, ifExists));
            }
            default -> throw new BadInputException("export format '" + format + "' is not supported: " + String.join(", ", FORMATS));
        }
    }

    /** The file that exists in a complete export, of any format: the commit's marker, written last. */
    public static String completeMarker(String format) {
        return Commit.SUCCESS;
    }

    // ------------------------------------------------------------------------------------------ the shared parts

    /** One layer's report row: what the formats check before anything is written (no shard is read for it). */
    record Layer(String name, String method, String order, int bits, int groupSize, boolean sym, int rows, int cols, double loss,
                 double bound, long clipped, double damping) {}

    /**
     * The committed layers of a quantize output, by name in the order of their folders, from their reports; refuses what no grid format can hold
     * (encoded methods, {@code --no-clip} runs) and an output with no layer. {@code formatName} is for messages.
     */
    static Map<String, Layer> layers(Configuration conf, String quantized, String formatName) {
        Map<String, Layer> layers = new LinkedHashMap<>(); // in the reports' order (sorted folder names)
        QuantizedLayout.readAll(conf, quantized, "reports", g -> {
            String name = g.getString("layer", 0);
            String m = g.getString("method", 0);
            if (!Methods.get(m).clips()) {
                throw new BadInputException("layer " + name + " is " + m + ": only " + Methods.sentence(Methods.gridMethods(), "and")
                        + " outputs can be exported as " + formatName + " (" + m + " keeps its own binary format in the shards' payload column)");
            }
            if (!g.getBoolean("clip", 0)) {
                throw new BadInputException("layer " + name + " was quantized with --no-clip: its codes fall outside [0, 2^bits−1] and "
                        + "cannot be stored as " + formatName + " (use the shards, or re-quantize with clipping)");
            }
            layers.put(name, new Layer(name, m, g.getString("order", 0), g.getInteger("bits", 0), g.getInteger("group_size", 0),
                    g.getBoolean("sym", 0), g.getInteger("rows", 0), g.getInteger("cols", 0), g.getDouble("loss", 0),
                    g.getDouble("bound", 0), g.getLong("clipped", 0), g.getDouble("damping", 0)));
        });
        if (layers.isEmpty()) {
            throw new BadInputException("no committed layer under " + Uris.redact(quantized) + "/reports: nothing to export");
        }
        return layers;
    }

    /**
     * The layers' shards as a map that reads a layer on each access, never all at once: a layer's unpacked codes
     * take 4 bytes a weight (3.9 GiB for a 1 B model).
     */
    static Map<String, QuantizedLayout.LayerShards> lazyShards(Configuration conf, String quantized, Set<String> names) {
        return new AbstractMap<>() {
            @Override
            public Set<Map.Entry<String, QuantizedLayout.LayerShards>> entrySet() {
                return new AbstractSet<>() {
                    @Override
                    public Iterator<Map.Entry<String, QuantizedLayout.LayerShards>> iterator() {
                        return names.stream().map(n -> Map.entry(n, QuantizedLayout.readLayer(conf, quantized, n))).iterator();
                    }

                    @Override
                    public int size() {
                        return names.size();
                    }
                };
            }

            @Override
            public QuantizedLayout.LayerShards get(Object name) {
                return names.contains(name) ? QuantizedLayout.readLayer(conf, quantized, (String) name) : null;
            }
        };
    }

    /** What a format adds to {@link #write}. */
    interface Format {
        /** The tensors that replace the quantized layer {@code l} (its shards, just read). */
        List<SafeTensorsWriter.RawTensor> tensors(QuantizedLayout.LayerShards l);

        /** The small files written beside the shards (name → text), given the tensors copied unchanged, in order. */
        Map<String, String> files(ModelWeights model, List<String> copied) throws IOException;

        /** Reads the checkpoint written under {@code dir} back and checks every layer exactly (throws on a mismatch). */
        void selfCheck(String dir);
    }

    /** What {@link #write} wrote: the number of tensors copied unchanged and the shard files. */
    record Written(int copied, List<String> files) {}

    /**
     * Writes a checkpoint through the commit protocol (class comment): one output shard per model shard with the same
     * name (and the shard index when there are several), the format's files, then the self-check, then the commit.
     */
    static Written write(Configuration conf, String quantized, String modelUri, String outDir, Commit.IfExists ifExists,
                         Set<String> layers, Format format) {
        refuseReplacingInputs(conf, outDir, modelUri, quantized);
        List<String> files = new ArrayList<>();
        List<String> copied = new ArrayList<>();
        try (ModelWeights model = ModelWeights.open(conf, modelUri)) {
            for (String name : layers) {
                if (!model.names().contains(name)) {
                    throw new BadInputException("quantized layer " + name + " is not a tensor of " + Uris.redact(modelUri) + ": wrong --model?");
                }
            }
            try (HadoopCommit commit = HadoopCommit.folder(conf, new Path(outDir), ifExists, Commit.SUCCESS)) {
                FileSystem fs = commit.fileSystem();
                Path tmp = commit.temp();
                Map<String, String> weightMap = new LinkedHashMap<>();
                for (String shard : model.shards()) {
                    List<SafeTensorsWriter.RawTensor> tensors = new ArrayList<>();
                    for (String name : model.names()) {
                        if (!model.shardOf(name).equals(shard)) {
                            continue;
                        }
                        if (layers.contains(name)) {
                            tensors.addAll(format.tensors(QuantizedLayout.readLayer(conf, quantized, name)));
                        } else {
                            SafeTensors.TensorInfo info = model.info(name);
                            tensors.add(new SafeTensorsWriter.RawTensor(name, info.dtype(), info.shape(), model.readRaw(name)));
                            copied.add(name);
                        }
                    }
                    String fileName = new Path(shard).getName();
                    for (SafeTensorsWriter.RawTensor t : tensors) {
                        weightMap.put(t.name(), fileName);
                    }
                    try (FSDataOutputStream o = fs.create(new Path(tmp, fileName), false)) {
                        SafeTensorsWriter.writeRaw(o, tensors, Map.of("format", "pt"));
                    }
                    files.add(fileName);
                }
                for (Map.Entry<String, String> f : format.files(model, copied).entrySet()) {
                    writeText(fs, new Path(tmp, f.getKey()), f.getValue());
                }
                if (model.shards().size() > 1) {
                    Map<String, Object> index = new LinkedHashMap<>();
                    index.put("metadata", Map.of("quantized_by", "babai-quant"));
                    index.put("weight_map", weightMap);
                    writeText(fs, new Path(tmp, ModelWeights.INDEX_FILE), Json.write(index));
                }
                format.selfCheck(tmp.toString());
                commit.commit();
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot export to " + Uris.redact(outDir) + ": " + e.getMessage(), e);
        }
        return new Written(copied.size(), files);
    }

    /** The output folder is replaced whole: it must not be, or hold, the model or the quantize output being read. */
    static void refuseReplacingInputs(Configuration conf, String outDir, String... inputs) {
        try {
            Path out = new Path(outDir);
            String o = out.getFileSystem(conf).makeQualified(out).toString();
            for (String in : inputs) {
                Path p = new Path(in);
                String i = p.getFileSystem(conf).makeQualified(p).toString();
                if (i.equals(o) || i.startsWith(o.endsWith("/") ? o : o + "/")) {
                    throw new BadInputException("--out " + Uris.redact(outDir) + " would replace " + Uris.redact(in)
                            + ", which the export reads: choose another --out");
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot resolve " + Uris.redact(outDir) + ": " + e.getMessage(), e);
        }
    }

    static void writeText(FileSystem fs, Path p, String text) throws IOException {
        try (FSDataOutputStream o = fs.create(p, false)) {
            o.write(text.getBytes(StandardCharsets.UTF_8));
        }
    }

    /** {@code P.weight} → {@code P} (other names unchanged). */
    static String module(String weightName) {
        return weightName.endsWith(".weight") ? weightName.substring(0, weightName.length() - ".weight".length()) : weightName;
    }
}
