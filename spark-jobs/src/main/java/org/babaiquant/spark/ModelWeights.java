package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Options.OpenFileOptions;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.util.functional.FutureIO;
import org.babaiquant.BadInputException;
import org.babaiquant.io.ByteSource;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.io.OnnxModel;

import java.io.EOFException;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A model's weights in safetensors, on any Hadoop file system ({@code file:}, {@code hdfs://}, {@code s3a://}), read
 * lazily: opening reads the headers only, and each read fetches one tensor's bytes with positional reads.
 *
 * <p>{@link #open} accepts
 * <ul>
 *   <li>a {@code .safetensors} file;</li>
 *   <li>a Hugging Face shard index, {@code model.safetensors.index.json}
 *       ({@code {"metadata": {...}, "weight_map": {tensor: shard file name}}}), whose shards sit next to it;</li>
 *   <li>a directory holding {@code model.safetensors.index.json}, else {@code model.safetensors}, else exactly one
 *       {@code *.safetensors} file (checked in that order).</li>
 * </ul>
 * The index is validated when opened: every shard it names exists and is a valid safetensors file, and every tensor it
 * maps is in that shard's header. Tensors a shard holds but the index does not map are not part of the model (as for
 * transformers' loader) and are not listed.
 *
 * <p>On Spark, open one per task, on the executor: it is not serialisable, and opening costs one small read per shard.
 * Ship the URI and {@link SparkSupport#hadoopConf} instead:
 * <pre>
 *   SparkSupport.HadoopConf hconf = SparkSupport.hadoopConf(spark);
 *   rdd.mapPartitions(names -&gt; { try (ModelWeights w = ModelWeights.open(hconf.get(), uri)) { ... } });
 * </pre>
 * Reads do not share a file position, so one instance may serve the threads of a task where the file system's
 * positional reads are thread-safe (local, HDFS and S3A ones are).
 *
 * <p>A {@code .onnx} file is a model too: its weights are the linear layers of {@link OnnxModel#linears()} (every
 * MatMul whose second input is a 2-D float initializer), named by their MatMul node names (e.g.
 * {@code /encoder/layer.0/attention/self/query/MatMul}), dtype F32, shape [out, in]: the stored [in, out] initializer
 * transposed to the nn.Linear layout. Opening reads the graph only (not the weight bytes); reads return float32
 * little-endian [out, in]. Other initializers (biases, embeddings, LayerNorm) are not listed.
 */
public final class ModelWeights implements AutoCloseable {

    public static final String INDEX_FILE = "model.safetensors.index.json";
    public static final String SINGLE_FILE = "model.safetensors";

    private final String uri;
    private final List<Shard> shards;
    /** Tensor name to its shard, in {@link #names()} order. */
    private final Map<String, Shard> shardOf;
    /** For a {@code .onnx} model: its linears by name (null for safetensors). */
    private final Map<String, OnnxModel.Linear> onnxLinears;
    private boolean closed;

    /** One open shard: its file name (as the index spells it), its source, its parsed header. */
    private record Shard(String fileName, ByteSource source, SafeTensors.Header header) {
    }

    private ModelWeights(String uri, List<Shard> shards, Map<String, Shard> shardOf) {
        this(uri, shards, shardOf, null);
    }

    private ModelWeights(String uri, List<Shard> shards, Map<String, Shard> shardOf, Map<String, OnnxModel.Linear> onnxLinears) {
        this.uri = uri;
        this.shards = shards;
        this.shardOf = shardOf;
        this.onnxLinears = onnxLinears;
    }

    /**
     * Opens a model: resolves {@code uri} as the class comment says, reads the index (if any) and every shard's
     * header, and validates them.
     *
     * @throws BadInputException    for a missing path, a directory with no (or several ambiguous) checkpoints, a
     *                              malformed index or shard, an index naming a missing shard or mapping a tensor its
     *                              shard lacks; the message names the file
     * @throws UncheckedIOException for a failed read
     */
    public static ModelWeights open(Configuration conf, String uri) {
        Path path = new Path(uri);
        FileSystem fs;
        FileStatus st;
        try {
            fs = path.getFileSystem(conf);
            st = status(fs, path);
            if (st == null) {
                throw new BadInputException("no such file or directory: " + uri
                        + " (expected a .safetensors or .onnx file, a " + INDEX_FILE + " or a directory holding one)");
            }
            if (st.isDirectory()) {
                st = pickInDirectory(fs, st, uri);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open " + uri + ": " + e.getMessage(), e);
        }
        List<Shard> opened = new ArrayList<>();
        try {
            ModelWeights w = st.getPath().getName().endsWith(".json") ? openIndexed(fs, st, opened)
                    : st.getPath().getName().endsWith(".onnx") ? openOnnx(fs, st, opened) : openSingle(fs, st, opened);
            opened.clear(); // owned by w now
            return w;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + st.getPath() + ": " + e.getMessage(), e);
        } finally {
            closeAll(opened, null);
        }
    }

    /**
     * A {@link ByteSource} over a Hadoop file: positional reads through {@link FSDataInputStream#readFully(long,
     * byte[], int, int)}, opened for random access (S3A then fetches the requested range, not the rest of the object).
     *
     * @throws BadInputException    if there is no such file
     * @throws UncheckedIOException if it cannot be opened
     */
    public static ByteSource byteSource(Configuration conf, String uri) {
        Path path = new Path(uri);
        try {
            FileSystem fs = path.getFileSystem(conf);
            FileStatus st = status(fs, path);
            if (st == null || st.isDirectory()) {
                throw new BadInputException((st == null ? "no such file: " : "is a directory, not a file: ") + uri);
            }
            return HadoopSource.open(fs, st, OpenFileOptions.FS_OPTION_OPENFILE_READ_POLICY_RANDOM);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open " + uri + ": " + e.getMessage(), e);
        }
    }

    // ------------------------------------------------------------------------------------------------ queries

    /** What was opened: the resolved file (the index, or the single {@code .safetensors}). */
    public String uri() {
        return uri;
    }

    /** Every tensor of the model: by shard file name, then in header order. */
    public List<String> names() {
        return List.copyOf(shardOf.keySet());
    }

    /** The shard file names, sorted; one for an unsharded model. */
    public List<String> shards() {
        return shards.stream().map(Shard::fileName).toList();
    }

    /** The tensor's header entry (dtype, shape, offsets relative to its shard's data buffer). */
    public SafeTensors.TensorInfo info(String name) {
        Shard s = shard(name);
        if (onnxLinears != null) {
            OnnxModel.Linear l = onnxLinears.get(name);
            return new SafeTensors.TensorInfo(name, "F32", new long[] {l.out(), l.in()}, l.weight().dataOffset(),
                    l.weight().dataOffset() + l.weight().dataLength());
        }
        return s.header.tensors().get(name);
    }

    /** The file name of the shard holding the tensor, as the index spells it (the file name when unsharded). */
    public String shardOf(String name) {
        return shard(name).fileName;
    }

    /** The first shard's {@code __metadata__}; empty if it has none. */
    public Map<String, String> metadata() {
        return onnxLinears != null ? Map.of() : shards.get(0).header.metadata();
    }

    /** A 2-D F32, F16, BF16 or F64 tensor as rows of doubles; see {@link SafeTensors#readMatrix(java.nio.file.Path, String)}. */
    public double[][] readMatrix(String name) {
        Shard s = shard(name);
        if (onnxLinears != null) {
            float[][] w = OnnxModel.readWeight(s.source, onnxLinears.get(name));
            double[][] m = new double[w.length][];
            for (int r = 0; r < w.length; r++) {
                m[r] = new double[w[r].length];
                for (int c = 0; c < w[r].length; c++) {
                    m[r][c] = w[r][c];
                }
            }
            return m;
        }
        return SafeTensors.readMatrix(s.source, s.header, name);
    }

    /** The tensor's stored bytes (at most 2 GiB); see {@link SafeTensors#readRaw(java.nio.file.Path, String)}. */
    public byte[] readRaw(String name) {
        Shard s = shard(name);
        if (onnxLinears != null) {
            return OnnxModel.toOutInBytes(OnnxModel.readWeight(s.source, onnxLinears.get(name)));
        }
        return SafeTensors.readRaw(s.source, s.header, name);
    }

    /** Closes every shard. Closing again does nothing; any other call after closing is an IllegalStateException. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        IOException failure = closeAll(shards, null);
        if (failure != null) {
            throw new UncheckedIOException("cannot close " + uri + ": " + failure.getMessage(), failure);
        }
    }

    @Override
    public String toString() {
        return "ModelWeights[" + uri + ", " + shards.size() + " shard(s), " + shardOf.size() + " tensors]";
    }

    private Shard shard(String name) {
        if (closed) {
            throw new IllegalStateException("ModelWeights for " + uri + " is closed");
        }
        Shard s = shardOf.get(name);
        if (s == null) {
            List<String> near = shardOf.keySet().stream()
                    .filter(n -> n.endsWith(name) || name.endsWith(n)).limit(5).toList();
            throw new BadInputException(uri + ": no tensor named '" + name + "' among its " + shardOf.size()
                    + " tensors" + (near.isEmpty() ? "" : "; did you mean " + String.join(", ", near) + "?"));
        }
        return s;
    }

    // ------------------------------------------------------------------------------------------------ opening

    /** {@code model.safetensors.index.json}, else {@code model.safetensors}, else the only {@code *.safetensors}. */
    private static FileStatus pickInDirectory(FileSystem fs, FileStatus dir, String uri) throws IOException {
        TreeMap<String, FileStatus> checkpoints = new TreeMap<>();
        FileStatus single = null;
        for (FileStatus f : fs.listStatus(dir.getPath())) {
            if (!f.isFile()) {
                continue;
            }
            String name = f.getPath().getName();
            if (name.equals(INDEX_FILE)) {
                return f;
            }
            if (name.equals(SINGLE_FILE)) {
                single = f;
            }
            if (name.endsWith(".safetensors")) {
                checkpoints.put(name, f);
            }
        }
        if (single != null) {
            return single;
        }
        if (checkpoints.size() == 1) {
            return checkpoints.firstEntry().getValue();
        }
        if (checkpoints.isEmpty()) {
            throw new BadInputException(uri + ": directory holds neither " + INDEX_FILE + " nor any .safetensors"
                    + " file");
        }
        throw new BadInputException(uri + ": directory holds " + checkpoints.size() + " .safetensors files ("
                + String.join(", ", checkpoints.keySet()) + ") but no " + INDEX_FILE + " saying how they"
                + " form one model; name one file, or add the index");
    }

    private static ModelWeights openSingle(FileSystem fs, FileStatus st, List<Shard> opened) throws IOException {
        Shard s = openShard(fs, st, opened);
        Map<String, Shard> shardOf = new LinkedHashMap<>();
        for (String name : s.header.tensors().keySet()) {
            shardOf.put(name, s);
        }
        return new ModelWeights(st.getPath().toString(), List.of(s), Collections.unmodifiableMap(shardOf));
    }

    /** An ONNX model: the graph is read once; its linears are the tensors (see the class comment). */
    private static ModelWeights openOnnx(FileSystem fs, FileStatus st, List<Shard> opened) throws IOException {
        ByteSource src = HadoopSource.open(fs, st, OpenFileOptions.FS_OPTION_OPENFILE_READ_POLICY_RANDOM);
        Shard s = new Shard(st.getPath().getName(), src, null);
        opened.add(s);
        Map<String, OnnxModel.Linear> linears = new LinkedHashMap<>();
        Map<String, Shard> shardOf = new LinkedHashMap<>();
        for (OnnxModel.Linear l : OnnxModel.read(src).requireLinears()) {
            linears.put(l.name(), l);
            shardOf.put(l.name(), s);
        }
        return new ModelWeights(st.getPath().toString(), List.of(s), Collections.unmodifiableMap(shardOf),
                Collections.unmodifiableMap(linears));
    }

    private static ModelWeights openIndexed(FileSystem fs, FileStatus indexStatus, List<Shard> opened)
            throws IOException {
        String index = indexStatus.getPath().toString();
        SafeTensors.ShardIndex parsed;
        try (ByteSource src = HadoopSource.open(fs, indexStatus,
                OpenFileOptions.FS_OPTION_OPENFILE_READ_POLICY_WHOLE_FILE)) {
            parsed = SafeTensors.readIndex(src);
        }
        TreeMap<String, List<String>> tensorsByShard = new TreeMap<>();
        parsed.weightMap().forEach((tensor, shard) ->
                tensorsByShard.computeIfAbsent(shard, k -> new ArrayList<>()).add(tensor));
        Path dir = indexStatus.getPath().getParent();
        List<Shard> shards = new ArrayList<>();
        Map<String, Shard> shardOf = new LinkedHashMap<>();
        for (Map.Entry<String, List<String>> e : tensorsByShard.entrySet()) {
            String shardName = e.getKey();
            List<String> mapped = e.getValue();
            Path shardPath = new Path(dir, shardName);
            FileStatus st = status(fs, shardPath);
            if (st == null || !st.isFile()) {
                throw new BadInputException(index + ": weight_map maps " + mapped.size() + " tensor(s) (e.g. '"
                        + mapped.get(0) + "') to shard '" + shardName + "', but " + shardPath
                        + (st == null ? " does not exist" : " is not a file"));
            }
            Shard s = openShard(fs, st, opened);
            Map<String, SafeTensors.TensorInfo> inHeader = s.header.tensors();
            for (String tensor : mapped) {
                if (!inHeader.containsKey(tensor)) {
                    throw new BadInputException(index + ": weight_map maps tensor '" + tensor + "' to shard '"
                            + shardName + "', but " + st.getPath() + " has no such tensor (its header lists "
                            + inHeader.size() + ")");
                }
            }
            // header order within the shard, restricted to what the index maps
            for (String tensor : inHeader.keySet()) {
                if (shardName.equals(parsed.weightMap().get(tensor))) {
                    shardOf.put(tensor, s);
                }
            }
            shards.add(s);
        }
        return new ModelWeights(index, List.copyOf(shards), Collections.unmodifiableMap(shardOf));
    }

    /** Opens a shard and parses its header; {@code opened} collects it so that a later failure closes it. */
    private static Shard openShard(FileSystem fs, FileStatus st, List<Shard> opened) throws IOException {
        ByteSource src = HadoopSource.open(fs, st, OpenFileOptions.FS_OPTION_OPENFILE_READ_POLICY_RANDOM);
        Shard s;
        try {
            s = new Shard(st.getPath().getName(), src, SafeTensors.header(src));
        } catch (RuntimeException e) {
            src.close();
            throw e;
        }
        opened.add(s);
        return s;
    }

    /** The file's status, or null if there is none. */
    private static FileStatus status(FileSystem fs, Path p) throws IOException {
        try {
            return fs.getFileStatus(p);
        } catch (FileNotFoundException e) {
            return null;
        }
    }

    /** Closes every shard, returning the first failure (added to {@code failure} if there was one). */
    private static IOException closeAll(List<Shard> shards, IOException failure) {
        for (Shard s : shards) {
            try {
                s.source.close();
            } catch (IOException e) {
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        return failure;
    }

    // ------------------------------------------------------------------------------------------------ byte source

    /** A Hadoop file as a {@link ByteSource}; the size is the one its status reported when opened. */
    private static final class HadoopSource implements ByteSource {
        /** Bounce-buffer size for the rare destination without a backing array. */
        private static final int COPY_BYTES = 1 << 20;

        private final String name;
        private final long size;
        private final FSDataInputStream in;

        private HadoopSource(String name, long size, FSDataInputStream in) {
            this.name = name;
            this.size = size;
            this.in = in;
        }

        static HadoopSource open(FileSystem fs, FileStatus st, String readPolicy) throws IOException {
            // openFile with the status: S3A skips its HEAD request; the policy tells it how far ahead to fetch.
            FSDataInputStream in = FutureIO.awaitFuture(fs.openFile(st.getPath()).withFileStatus(st)
                    .opt(OpenFileOptions.FS_OPTION_OPENFILE_READ_POLICY, readPolicy).build());
            return new HadoopSource(st.getPath().toString(), st.getLen(), in);
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public long size() {
            return size;
        }

        @Override
        public void readFully(long position, ByteBuffer dst) throws IOException {
            int n = dst.remaining();
            if (position < 0 || position > size - n) {
                throw new EOFException(name + ": cannot read " + n + " bytes at byte " + position + " of " + size);
            }
            if (dst.hasArray()) {
                in.readFully(position, dst.array(), dst.arrayOffset() + dst.position(), n);
                dst.position(dst.limit());
                return;
            }
            byte[] copy = new byte[Math.min(n, COPY_BYTES)];
            long p = position;
            while (dst.hasRemaining()) {
                int k = Math.min(copy.length, dst.remaining());
                in.readFully(p, copy, 0, k);
                dst.put(copy, 0, k);
                p += k;
            }
        }

        @Override
        public void close() throws IOException {
            in.close();
        }

        @Override
        public String toString() {
            return name;
        }
    }
}
