package org.babaiquant.io;

import org.babaiquant.BadInputException;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;

/**
 * The parts of an ONNX {@code ModelProto} that quantization needs, read from the protobuf wire format without a
 * protobuf library: the graph's nodes, its initializers (where their bytes lie, not the bytes) and its outputs. From
 * them, {@link #linears()}: every {@code MatMul} whose second input is a 2-D float initializer, i.e. a linear layer
 * {@code y = x·W_onnx} with {@code W_onnx} stored [in, out].
 *
 * <p>Opening scans the file once through a {@link ByteSource} and skips over the weight bytes, so opening a 90 MB
 * model reads only its few hundred kilobytes of graph; {@link #readWeight} then reads one weight's bytes.
 *
 * <p>Wire format facts used (onnx.proto, protobuf encoding): a message is a sequence of (tag = field·8 + wire type,
 * value); wire types 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. A repeated field may occur several times,
 * and a second occurrence of an embedded message field is merged into the first, so bytes appended to a file can add
 * graph outputs ({@link #extraOutputs}). Field numbers: ModelProto.graph = 7; GraphProto.node = 1, initializer = 5,
 * input = 11, output = 12; NodeProto.input = 1, output = 2, name = 3, op_type = 4; TensorProto.dims = 1,
 * data_type = 2 (1 = FLOAT), float_data = 4 (packed), name = 8, raw_data = 9, data_location = 14 (1 = EXTERNAL);
 * ValueInfoProto.name = 1, type = 2; TypeProto.tensor_type = 1; TypeProto.Tensor.elem_type = 1.
 */
public final class OnnxModel {
    /** TensorProto.DataType FLOAT. */
    public static final int FLOAT = 1;

    /** A graph node. */
    public record Node(String name, String opType, List<String> inputs, List<String> outputs) {}

    /**
     * An initializer: its bytes are {@code dataLength} bytes at {@code dataOffset} of the file, little-endian, either
     * {@code raw_data} or a packed {@code float_data} (same bytes for FLOAT); {@code dataOffset} is −1 when neither
     * is present in the file (external data, or another encoding).
     */
    public record Initializer(String name, int dataType, long[] dims, long dataOffset, long dataLength, boolean external) {
        public long numel() {
            long n = 1;
            for (long d : dims) {
                n *= d;
            }
            return n;
        }
    }

    /**
     * A linear layer: MatMul node {@code name} computes {@code input · weight}, {@code weight} an [in, out] float
     * initializer. {@link #site} groups linears reading the same tensor (q/k/v share one input).
     */
    public record Linear(String name, String input, String output, Initializer weight, int in, int out) {}

    private final String source;
    private final List<Node> nodes;
    private final Map<String, Initializer> initializers;
    private final List<String> outputs;
    private final List<String> inputs;

    private OnnxModel(String source, List<Node> nodes, Map<String, Initializer> initializers, List<String> inputs,
                      List<String> outputs) {
        this.source = source;
        this.nodes = nodes;
        this.initializers = initializers;
        this.inputs = inputs;
        this.outputs = outputs;
    }

    /** Reads the graph of a local {@code .onnx} file. */
    public static OnnxModel read(Path file) {
        if (!Files.isRegularFile(file)) {
            throw new BadInputException("no such ONNX file: " + file);
        }
        try (ByteSource src = ByteSource.of(file)) {
            return read(src);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    /**
     * Reads the graph through any byte source (a Hadoop file, bytes in memory).
     *
     * @throws BadInputException if the bytes are not a well-formed ModelProto with a graph
     */
    public static OnnxModel read(ByteSource src) {
        List<Node> nodes = new ArrayList<>();
        Map<String, Initializer> inits = new LinkedHashMap<>();
        List<String> ins = new ArrayList<>();
        List<String> outs = new ArrayList<>();
        boolean graph = false;
        try {
            Cursor c = new Cursor(src, 0, src.size());
            while (c.more()) {
                long tag = c.varint();
                if (tag == ((7 << 3) | 2)) {
                    graph = true;
                    Cursor g = c.sub();
                    while (g.more()) {
                        long t = g.varint();
                        int field = (int) (t >>> 3);
                        if (field == 1 && (t & 7) == 2) {
                            nodes.add(node(g.subBytes()));
                        } else if (field == 5 && (t & 7) == 2) {
                            Initializer i = initializer(g.sub());
                            inits.put(i.name, i);
                        } else if (field == 11 && (t & 7) == 2) {
                            ins.add(valueInfoName(g.subBytes()));
                        } else if (field == 12 && (t & 7) == 2) {
                            outs.add(valueInfoName(g.subBytes()));
                        } else {
                            g.skip((int) (t & 7));
                        }
                    }
                } else {
                    c.skip((int) (tag & 7));
                }
            }
        } catch (IOException | RuntimeException e) {
            throw new BadInputException(src.name() + " is not a readable ONNX model (protobuf parse failed: "
                    + e.getMessage() + ")", e);
        }
        if (!graph) {
            throw new BadInputException(src.name() + " is not an ONNX model: it has no graph (ModelProto field 7)");
        }
        return new OnnxModel(src.name(), List.copyOf(nodes), Collections.unmodifiableMap(inits), List.copyOf(ins),
                List.copyOf(outs));
    }

    public String source() {
        return source;
    }

    public List<Node> nodes() {
        return nodes;
    }

    public Map<String, Initializer> initializers() {
        return initializers;
    }

    /** Graph inputs, in order (an exporter may list initializers here too; IR ≥ 4 need not). */
    public List<String> inputs() {
        return inputs;
    }

    public List<String> outputs() {
        return outputs;
    }

    /**
     * The linear layers, in graph order: MatMul nodes whose second input is a 2-D FLOAT initializer stored in the file.
     * Node names must be unique among them (they name the weights).
     */
    public List<Linear> linears() {
        List<Linear> out = new ArrayList<>();
        LinkedHashSet<String> names = new LinkedHashSet<>();
        for (Node n : nodes) {
            if (!"MatMul".equals(n.opType) || n.inputs.size() != 2) {
                continue;
            }
            Initializer w = initializers.get(n.inputs.get(1));
            if (w == null || w.dataType != FLOAT || w.dims.length != 2 || w.external || w.dataOffset < 0) {
                continue;
            }
            if (n.outputs.size() != 1) {
                throw new BadInputException(source + ": MatMul node '" + n.name + "' has " + n.outputs.size()
                        + " outputs; a MatMul has exactly one");
            }
            if (w.dims[0] < 1 || w.dims[1] < 1 || w.dims[0] > Integer.MAX_VALUE || w.dims[1] > Integer.MAX_VALUE) {
                throw new BadInputException(source + ": initializer '" + w.name + "' has dims "
                        + Arrays.toString(w.dims) + "; a linear's weight needs two dims in 1.." + Integer.MAX_VALUE);
            }
            String name = n.name.isEmpty() ? n.outputs.get(0) : n.name;
            if (!names.add(name)) {
                throw new BadInputException(source + ": two MatMul nodes are named '" + name + "'; linears need unique names");
            }
            out.add(new Linear(name, n.inputs.get(0), n.outputs.get(0), w, Math.toIntExact(w.dims[0]), Math.toIntExact(w.dims[1])));
        }
        return out;
    }

    /** {@link #linears()}, refusing a model that has none. */
    public List<Linear> requireLinears() {
        List<Linear> l = linears();
        if (l.isEmpty()) {
            throw new BadInputException(source + " has no linear layers: no MatMul node takes a 2-D float32 initializer"
                    + " (stored in the file) as its second input");
        }
        return l;
    }

    /** The linear named {@code name} (a MatMul node name). */
    public Linear linear(String name) {
        for (Linear l : linears()) {
            if (l.name.equals(name)) {
                return l;
            }
        }
        throw new BadInputException(source + ": no linear (MatMul with a float weight) named '" + name + "'");
    }

    /** A float initializer's values as stored, little-endian bytes (for MatMul weights: [in, out] row-major). */
    public static byte[] readBytes(ByteSource src, Initializer init) {
        if (init.dataOffset < 0 || init.dataLength > Integer.MAX_VALUE) {
            throw new BadInputException(src.name() + ": initializer " + init.name + " has no in-file data this reader can use");
        }
        ByteBuffer b = ByteBuffer.allocate((int) init.dataLength);
        try {
            src.readFully(init.dataOffset, b);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + init.name + " from " + src.name() + ": " + e.getMessage(), e);
        }
        return b.array();
    }

    /** A linear's weight transposed to the nn.Linear layout W [out, in], float32 values. */
    public static float[][] readWeight(ByteSource src, Linear l) {
        ByteBuffer b = ByteBuffer.wrap(readBytes(src, l.weight)).order(ByteOrder.LITTLE_ENDIAN);
        if (b.capacity() != 4L * l.in * l.out) {
            throw new BadInputException(src.name() + ": " + l.weight.name + " holds " + b.capacity() + " bytes, not " + l.in + "×"
                    + l.out + " float32");
        }
        float[][] w = new float[l.out][l.in];
        for (int i = 0; i < l.in; i++) {
            for (int o = 0; o < l.out; o++) {
                w[o][i] = b.getFloat();
            }
        }
        return w;
    }

    /** W [out, in] as float32 little-endian bytes, row-major (what {@code ModelWeights.readRaw} returns for ONNX). */
    public static byte[] toOutInBytes(float[][] w) {
        ByteBuffer b = ByteBuffer.allocate(4 * w.length * w[0].length).order(ByteOrder.LITTLE_ENDIAN);
        for (float[] row : w) {
            for (float v : row) {
                b.putFloat(v);
            }
        }
        return b.array();
    }

    /**
     * Copies {@code in} to {@code out} with the given linears' weights replaced by W [out, in] (transposed back to the
     * stored [in, out]). The tensors keep their size, so every protobuf length prefix stays valid and the new bytes go
     * exactly where the old ones were. Committed as one file ({@link LocalCommit}): a temporary sibling moved into place.
     */
    public static void rewriteWeights(Path in, OnnxModel model, Map<String, float[][]> weights, Path out) {
        Map<String, Linear> byName = new LinkedHashMap<>();
        for (Linear l : model.linears()) {
            byName.put(l.name, l);
        }
        try (LocalCommit c = LocalCommit.file(out, Commit.IfExists.REPLACE)) {
            Path tmp = c.temp();
            Files.copy(in, tmp);
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE)) {
                for (Map.Entry<String, float[][]> e : weights.entrySet()) {
                    Linear l = byName.get(e.getKey());
                    if (l == null) {
                        throw new BadInputException(in + ": no linear named '" + e.getKey() + "' to replace");
                    }
                    float[][] w = e.getValue();
                    if (w.length != l.out || w[0].length != l.in) {
                        throw new BadInputException("replacement for " + l.name + " is [" + w.length + ", " + w[0].length
                                + "] but the layer is [out=" + l.out + ", in=" + l.in + "]");
                    }
                    ByteBuffer b = ByteBuffer.allocate(4 * l.in * l.out).order(ByteOrder.LITTLE_ENDIAN);
                    for (int i = 0; i < l.in; i++) {
                        for (int o = 0; o < l.out; o++) {
                            float v = w[o][i];
                            if (!Float.isFinite(v)) {
                                throw new BadInputException("replacement for " + l.name + " holds " + v + " at [" + o + ", " + i + "]");
                            }
                            b.putFloat(v);
                        }
                    }
                    b.flip();
                    long pos = l.weight.dataOffset;
                    while (b.hasRemaining()) {
                        pos += ch.write(b, pos);
                    }
                }
            }
            c.commit();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + out + ": " + e.getMessage(), e);
        }
    }

    /**
     * Bytes that, appended to the model's bytes, make the named float tensors extra graph outputs (a second
     * {@code ModelProto.graph} occurrence holding only {@code GraphProto.output} entries is merged into the first).
     */
    public static byte[] extraOutputs(List<String> names) {
        ByteArrayOutputStream graph = new ByteArrayOutputStream();
        for (String n : names) {
            ByteArrayOutputStream tensorType = new ByteArrayOutputStream();
            varint(tensorType, 1 << 3);
            varint(tensorType, FLOAT);                                         // elem_type = FLOAT
            ByteArrayOutputStream typeProto = new ByteArrayOutputStream();
            lengthDelimited(typeProto, 1, tensorType.toByteArray());           // tensor_type
            ByteArrayOutputStream valueInfo = new ByteArrayOutputStream();
            lengthDelimited(valueInfo, 1, n.getBytes(StandardCharsets.UTF_8)); // name
            lengthDelimited(valueInfo, 2, typeProto.toByteArray());            // type
            lengthDelimited(graph, 12, valueInfo.toByteArray());               // GraphProto.output
        }
        ByteArrayOutputStream model = new ByteArrayOutputStream();
        lengthDelimited(model, 7, graph.toByteArray());                        // ModelProto.graph
        return model.toByteArray();
    }

    // ------------------------------------------------------------------------------------------------ wire format

    private static void varint(ByteArrayOutputStream o, long v) {
        while ((v & ~0x7fL) != 0) {
            o.write((int) ((v & 0x7f) | 0x80));
            v >>>= 7;
        }
        o.write((int) v);
    }

    private static void lengthDelimited(ByteArrayOutputStream o, int field, byte[] payload) {
        varint(o, ((long) field << 3) | 2);
        varint(o, payload.length);
        o.writeBytes(payload);
    }

    private static Node node(Cursor c) throws IOException {
        String name = "";
        String op = "";
        List<String> in = new ArrayList<>();
        List<String> out = new ArrayList<>();
        while (c.more()) {
            long t = c.varint();
            int f = (int) (t >>> 3);
            if ((t & 7) == 2 && f >= 1 && f <= 4) {
                String s = c.string();
                switch (f) {
                    case 1 -> in.add(s);
                    case 2 -> out.add(s);
                    case 3 -> name = s;
                    default -> op = s;
                }
            } else {
                c.skip((int) (t & 7));
            }
        }
        return new Node(name, op, List.copyOf(in), List.copyOf(out));
    }

    private static String valueInfoName(Cursor c) throws IOException {
        String name = "";
        while (c.more()) {
            long t = c.varint();
            if (t == ((1 << 3) | 2)) {
                name = c.string();
            } else {
                c.skip((int) (t & 7));
            }
        }
        return name;
    }

    private static Initializer initializer(Cursor c) throws IOException {
        String name = "";
        int type = 0;
        List<Long> dims = new ArrayList<>();
        long offset = -1;
        long length = 0;
        boolean external = false;
        while (c.more()) {
            long t = c.varint();
            int f = (int) (t >>> 3);
            int wt = (int) (t & 7);
            if (f == 1 && wt == 0) {
                dims.add(c.varint());
            } else if (f == 1 && wt == 2) {
                Cursor s = c.sub();
                while (s.more()) {
                    dims.add(s.varint());
                }
            } else if (f == 2 && wt == 0) {
                type = (int) c.varint();
            } else if ((f == 9 || f == 4) && wt == 2) { // raw_data, or packed float_data: the same LE bytes
                length = c.varint();
                offset = c.pos;
                c.skipBytes(length);
            } else if (f == 8 && wt == 2) {
                name = c.string();
            } else if (f == 14 && wt == 0) {
                external = c.varint() == 1;
            } else {
                c.skip(wt);
            }
        }
        long[] d = dims.stream().mapToLong(Long::longValue).toArray();
        return new Initializer(name, type, d, offset, length, external);
    }

    /** Reads a protobuf message between two positions of a source, through a small window buffer. */
    private static final class Cursor {
        private static final int WINDOW = 1 << 16;
        private final ByteSource src;
        private final long end;
        private long pos;
        private byte[] window;
        private long windowStart;
        private int windowLength;

        Cursor(ByteSource src, long pos, long end) {
            this.src = src;
            this.pos = pos;
            this.end = end;
        }

        boolean more() {
            return pos < end;
        }

        private int next() throws IOException {
            if (pos >= end) {
                throw new EOFException("message ends inside a field at byte " + pos);
            }
            if (window == null || pos < windowStart || pos >= windowStart + windowLength) {
                int n = (int) Math.min(WINDOW, end - pos);
                ByteBuffer b = ByteBuffer.allocate(n);
                src.readFully(pos, b);
                window = b.array();
                windowStart = pos;
                windowLength = n;
            }
            return window[(int) (pos++ - windowStart)] & 0xff;
        }

        long varint() throws IOException {
            long r = 0;
            for (int shift = 0; shift < 64; shift += 7) {
                int x = next();
                r |= (long) (x & 0x7f) << shift;
                if (x < 0x80) {
                    return r;
                }
            }
            throw new IOException("malformed varint at byte " + pos);
        }

        void skipBytes(long n) throws IOException {
            if (n < 0 || n > end - pos) {
                throw new EOFException("field of " + n + " bytes at byte " + pos + " runs past its message's end " + end);
            }
            pos += n;
        }

        void skip(int wireType) throws IOException {
            switch (wireType) {
                case 0 -> varint();
                case 1 -> skipBytes(8);
                case 2 -> skipBytes(varint());
                case 5 -> skipBytes(4);
                default -> throw new IOException("unsupported wire type " + wireType + " at byte " + pos);
            }
        }

        /** The next length-delimited field as a cursor sharing this source (no copy). */
        Cursor sub() throws IOException {
            long n = varint();
            long start = pos;
            skipBytes(n);
            return new Cursor(src, start, start + n);
        }

        /** The next length-delimited field read into memory (for small messages: nodes, value infos). */
        Cursor subBytes() throws IOException {
            long n = varint();
            if (n > Integer.MAX_VALUE || n > end - pos) {
                throw new EOFException("field of " + n + " bytes at byte " + pos + " runs past its message's end " + end);
            }
            byte[] b = new byte[(int) n];
            for (int i = 0; i < n; i++) {
                b[i] = (byte) next();
            }
            return new Cursor(ByteSource.of(src.name(), b), 0, n);
        }

        String string() throws IOException {
            long n = varint();
            if (n > 1 << 20 || n > end - pos) {
                throw new IOException("string of " + n + " bytes at byte " + pos);
            }
            byte[] b = new byte[(int) n];
            for (int i = 0; i < n; i++) {
                b[i] = (byte) next();
            }
            return new String(b, StandardCharsets.UTF_8);
        }
    }
}
