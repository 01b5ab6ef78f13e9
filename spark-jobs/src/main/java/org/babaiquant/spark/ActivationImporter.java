package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.babaiquant.BadInputException;
import org.babaiquant.io.Commit;
import org.babaiquant.io.Npy;
import org.babaiquant.io.SafeTensors;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Converts NumPy {@code .npy} dumps and {@code .safetensors} files (what a PyTorch forward hook writes) into the
 * {@link ActivationLayout}, streaming: a tile of 64 rows is in memory at a time, never the whole file.
 * Each site is written under a temporary folder of the output and committed on its own ({@link HadoopCommit}), so
 * an interrupted import leaves no site that looks complete, and the next import of that site removes its leftovers.
 */
public final class ActivationImporter {
    /** One input: a file (and a tensor inside a safetensors file) feeding a site. */
    public record Source(String site, java.nio.file.Path file, String tensor) {
        String label() {
            return tensor == null ? file.getFileName().toString() : file.getFileName() + ":" + tensor;
        }
    }

    /** Per-site summary. */
    public record Imported(String site, long tiles, long tokens, int dim, String dtype) {}

    private final Configuration conf;
    private final int tileRows;

    public ActivationImporter(Configuration conf, int tileRows) {
        if (tileRows < 1 || tileRows > ActivationLayout.MAX_TILE_ROWS) {
            throw new IllegalArgumentException("tile rows must be in 1.." + ActivationLayout.MAX_TILE_ROWS + ", got " + tileRows);
        }
        this.conf = conf;
        this.tileRows = tileRows;
    }

    /** The tensors of a safetensors file whose names match a regex rule, in file order; a rule matching nothing is an error. */
    public static List<Source> safetensorsSources(java.nio.file.Path file, Map<String, String> siteMap) {
        Map<String, SafeTensors.TensorInfo> tensors = SafeTensors.list(file);
        List<Source> out = new ArrayList<>();
        for (Map.Entry<String, String> rule : siteMap.entrySet()) {
            Pattern p = Pattern.compile(rule.getKey());
            int matched = 0;
            for (String name : tensors.keySet()) {
                java.util.regex.Matcher m = p.matcher(name);
                if (m.matches()) { // SITE may use the regex's groups ($1): one rule imports every expert's tensor
                    out.add(new Source(m.replaceFirst(rule.getValue()), file, name));
                    matched++;
                }
            }
            if (matched == 0) {
                throw new BadInputException("--site-map " + rule.getKey() + "=" + rule.getValue() + " matches no tensor of "
                        + file + " (it has " + tensors.keySet().stream().limit(8).toList() + (tensors.size() > 8 ? ", …)" : ")"));
            }
        }
        return out;
    }

    /**
     * Imports every site, each committed on its own ({@link HadoopCommit}): an existing site is refused unless
     * {@code overwrite} (then replaced whole); a failure leaves the sites committed before it and no temporary.
     */
    public List<Imported> run(List<Source> sources, String outUri, boolean overwrite) {
        Path out = new Path(outUri);
        Map<String, List<Source>> bySite = new LinkedHashMap<>();
        for (Source s : sources) {
            ActivationLayout.siteDir(s.site()); // every name checked before anything is written
            bySite.computeIfAbsent(s.site(), k -> new ArrayList<>()).add(s);
        }
        Map<String, HadoopCommit> commits = new LinkedHashMap<>();
        try {
            for (String site : bySite.keySet()) {
                commits.put(site, HadoopCommit.folder(conf, new Path(out, ActivationLayout.siteDir(site)),
                        overwrite ? Commit.IfExists.REPLACE : Commit.IfExists.REFUSE, null));
            }
            List<Imported> result = new ArrayList<>();
            for (Map.Entry<String, List<Source>> e : bySite.entrySet()) {
                HadoopCommit c = commits.get(e.getKey());
                result.add(importSite(e.getKey(), e.getValue(), c.temp()));
                c.commit();
            }
            return result;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + Uris.redact(outUri) + ": " + e.getMessage(), e);
        } finally {
            commits.values().forEach(HadoopCommit::close);
        }
    }

    private Imported importSite(String site, List<Source> sources, Path dir) throws IOException {
        long seq = 0;
        long tokens = 0;
        int dim = -1;
        String dtype = null;
        for (int i = 0; i < sources.size(); i++) {
            Source s = sources.get(i);
            Input in = open(s);
            if (dim >= 0 && (in.dim != dim || !in.dtype.equals(dtype))) {
                throw new BadInputException(s.label() + " has d=" + in.dim + " " + in.dtype + " but site " + site
                        + " already has d=" + dim + " " + dtype + " from an earlier source");
            }
            dim = in.dim;
            dtype = in.dtype;
            String name = String.format("part-%05d-%s.parquet", i, s.label().replaceAll("[^A-Za-z0-9._-]", "_"));
            try (ActivationLayout.Writer w = new ActivationLayout.Writer(conf, new Path(dir, name), site, s.label(), in.dim, in.dtype);
                 FileChannel ch = FileChannel.open(s.file(), StandardOpenOption.READ)) {
                int rowBytes = in.dim * in.srcSize;
                for (long r = 0; r < in.rows; r += tileRows) {
                    int n = (int) Math.min(tileRows, in.rows - r);
                    ByteBuffer buf = ByteBuffer.allocate(n * rowBytes);
                    long pos = in.offset + r * rowBytes;
                    while (buf.hasRemaining()) {
                        int k = ch.read(buf, pos + buf.position());
                        if (k < 0) {
                            throw new BadInputException(s.label() + " is truncated at row " + r);
                        }
                    }
                    w.write(seq++, -1, n, in.toTile(buf.array(), n));
                    tokens += n;
                }
            }
        }
        return new Imported(site, seq, tokens, dim, dtype);
    }

    /** An input tensor [rows, dim] at a byte offset, with its on-disk value size and the tile dtype it becomes. */
    private record Input(long offset, long rows, int dim, int srcSize, String dtype, boolean f64) {
        byte[] toTile(byte[] raw, int n) {
            if (!f64) {
                return raw;
            }
            ByteBuffer src = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
            ByteBuffer dst = ByteBuffer.allocate(n * dim * 4).order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < n * dim; i++) {
                dst.putFloat((float) src.getDouble(8 * i));
            }
            return dst.array();
        }
    }

    private static Input open(Source s) throws IOException {
        if (s.tensor() == null) {
            Npy.NpyHeader h = Npy.readHeader(s.file());
            if (h.shape().length != 2) {
                throw new BadInputException(s.file() + ": activations must be 2-D [tokens, d], got shape "
                        + java.util.Arrays.toString(h.shape()));
            }
            return switch (h.dtype()) {
                case "<f4" -> new Input(h.dataOffset(), h.shape()[0], h.shape()[1], 4, "f32", false);
                case "<f8" -> new Input(h.dataOffset(), h.shape()[0], h.shape()[1], 8, "f32", true);
                default -> throw new BadInputException(s.file() + ": activations must be float32 or float64, got " + h.dtype());
            };
        }
        SafeTensors.TensorInfo t = SafeTensors.list(s.file()).get(s.tensor());
        long[] shape = t.shape();
        if (shape.length < 2) {
            throw new BadInputException(s.label() + ": activations must be [..., d], got " + java.util.Arrays.toString(shape));
        }
        long rows = 1;
        for (int i = 0; i < shape.length - 1; i++) {
            rows *= shape[i];
        }
        int dim = Math.toIntExact(shape[shape.length - 1]);
        long dataStart = SafeTensors.dataStart(s.file());
        return switch (t.dtype()) {
            case "F32" -> new Input(dataStart + t.begin(), rows, dim, 4, "f32", false);
            case "F16" -> new Input(dataStart + t.begin(), rows, dim, 2, "f16", false);
            case "BF16" -> new Input(dataStart + t.begin(), rows, dim, 2, "bf16", false);
            case "F64" -> new Input(dataStart + t.begin(), rows, dim, 8, "f32", true);
            default -> throw new BadInputException(s.label() + ": activation dtype " + t.dtype() + " is not supported (F32, F16, BF16, F64)");
        };
    }
}
