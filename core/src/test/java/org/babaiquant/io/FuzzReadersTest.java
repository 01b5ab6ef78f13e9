package org.babaiquant.io;

import org.babaiquant.BadInputException;
import org.babaiquant.nonclip.Hptq;
import org.babaiquant.nonclip.HptqFormat;
import org.babaiquant.nonclip.HptqLayer;
import org.babaiquant.nonclip.SsqrFormat;
import org.babaiquant.nonclip.SsqrLayer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;


/**
 * Every reader of untrusted bytes in core, fed thousands of seeded mutations of a valid file ({@link Fuzz}: each case
 * either reads or ends in {@link BadInputException}, never another exception, a hang or an allocation far beyond the
 * file's size). The Parquet layouts are fuzzed the same way in the tests module (ParquetReadersFuzzTest).
 */
class FuzzReadersTest {
    private static final int CASES = 3000;

    @TempDir
    Path dir;

    private static void fuzz(String format, byte[] seed, long rngSeed, Fuzz.Reader reader) {
        Fuzz.run(format, seed, rngSeed, CASES, reader);
    }

    @Test
    void npy() throws IOException {
        Path valid = dir.resolve("w.npy");
        Random r = new Random(1);
        double[][] m = new double[6][10];
        for (double[] row : m) {
            for (int j = 0; j < row.length; j++) {
                row[j] = r.nextGaussian();
            }
        }
        NpyWriter.writeF32(valid, m);
        Path f = dir.resolve("m.npy");
        fuzz("npy", Files.readAllBytes(valid), 101, b -> {
            Files.write(f, b);
            Npy.readHeader(f);
            Npy.readMatrix(f);
        });
    }

    @Test
    void safetensorsHeaderAndData() throws IOException {
        Random r = new Random(2);
        byte[] f32 = new byte[4 * 12];
        byte[] f16 = new byte[2 * 8];
        r.nextBytes(f16);
        for (int i = 0; i < f16.length; i += 2) {
            f16[i + 1] &= 0x3b; // finite halves
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        SafeTensorsWriter.writeRaw(out, List.of(new SafeTensorsWriter.RawTensor("a.weight", "F32", new long[] {3, 4}, f32),
                new SafeTensorsWriter.RawTensor("b", "F16", new long[] {2, 4}, f16)), Map.of("format", "pt"));
        fuzz("safetensors", out.toByteArray(), 102, b -> {
            ByteSource src = ByteSource.of("fuzz.safetensors", b);
            SafeTensors.Header h = SafeTensors.header(src);
            for (String name : h.tensors().keySet()) {
                SafeTensors.readRaw(src, h, name);
                if (h.tensors().get(name).shape().length == 2) {
                    SafeTensors.readMatrix(src, h, name);
                }
            }
        });
    }

    @Test
    void safetensorsShardIndex() {
        byte[] seed = ("{\"metadata\": {\"total_size\": 96}, \"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\","
                + " \"b\": \"model-00002-of-00002.safetensors\"}}").getBytes(StandardCharsets.UTF_8);
        fuzz("shard index", seed, 103, b -> ShardIndex.read(ByteSource.of("model.safetensors.index.json", b)));
    }

    @Test
    void ssqr() {
        Random r = new Random(4);
        int rows = 6;
        int cols = 32;
        double[][] scale = new double[rows][2];
        double[][] zero = new double[rows][2];
        int[][] codes = new int[rows][cols];
        for (int o = 0; o < rows; o++) {
            for (int g = 0; g < 2; g++) {
                scale[o][g] = org.babaiquant.core.Half.round((float) (0.001 + r.nextDouble() * 0.1));
                zero[o][g] = r.nextInt(16);
            }
            for (int j = 0; j < cols; j++) {
                codes[o][j] = r.nextInt(20) == 0 ? 16 + r.nextInt(3) : r.nextInt(16); // a few outliers
            }
        }
        SsqrLayer layer = SsqrLayer.fromLattice(codes, org.babaiquant.core.QuantGrid.of(4, 16, cols, scale, zero));
        fuzz("ssqr", SsqrFormat.write(layer), 104, SsqrFormat::read);
    }

    @Test
    void hptq() {
        Random r = new Random(5);
        int[] codes = new int[7 * 40];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = (int) Math.rint(r.nextGaussian() * 3);
        }
        byte[] seed = HptqFormat.write(new HptqLayer(Hptq.Kind.HPTQ, 7, 40, 0.25f, codes));
        fuzz("hptq", seed, 105, b -> {
            HptqFormat.read(b);
            HptqFormat.dequantize(b);
        });
    }

    @Test
    void onnx() {
        fuzz("onnx", tinyOnnx(), 106, b -> {
            ByteSource src = ByteSource.of("fuzz.onnx", b);
            OnnxModel m = OnnxModel.read(src);
            for (OnnxModel.Linear l : m.linears()) {
                OnnxModel.readWeight(src, l);
            }
        });
    }

    // ---------------------------------------------------------------- a tiny ONNX model, protobuf by hand

    /** y = x·W + b: MatMul(x, W) then Add(·, b), W a 4×3 float initializer, b a 3-vector. */
    static byte[] tinyOnnx() {
        float[] w = new float[12];
        for (int i = 0; i < w.length; i++) {
            w[i] = 0.1f * i;
        }
        byte[] graph = concat(
                field(1, node(List.of("x", "W"), List.of("t"), "MatMul", "mm")),
                field(1, node(List.of("t", "B"), List.of("y"), "Add", "add")),
                field(2, utf8("g")),
                field(5, tensor("W", new long[] {4, 3}, w)),
                field(5, tensor("B", new long[] {3}, new float[] {1, 2, 3})),
                field(11, field(1, utf8("x"))),
                field(12, field(1, utf8("y"))));
        return concat(varintField(1, 8), field(7, graph));
    }

    private static byte[] node(List<String> in, List<String> out, String op, String name) {
        List<byte[]> parts = new ArrayList<>();
        in.forEach(s -> parts.add(field(1, utf8(s))));
        out.forEach(s -> parts.add(field(2, utf8(s))));
        parts.add(field(3, utf8(name)));
        parts.add(field(4, utf8(op)));
        return concat(parts.toArray(new byte[0][]));
    }

    private static byte[] tensor(String name, long[] dims, float[] values) {
        List<byte[]> parts = new ArrayList<>();
        for (long d : dims) {
            parts.add(varintField(1, d));
        }
        parts.add(varintField(2, 1)); // FLOAT
        parts.add(field(8, utf8(name)));
        java.nio.ByteBuffer raw = java.nio.ByteBuffer.allocate(4 * values.length).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
            raw.putFloat(v);
        }
        parts.add(field(9, raw.array()));
        return concat(parts.toArray(new byte[0][]));
    }

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static byte[] field(int number, byte[] payload) {
        return concat(varint((number << 3) | 2), varint(payload.length), payload);
    }

    private static byte[] varintField(int number, long v) {
        return concat(varint(number << 3), varint(v));
    }

    private static byte[] varint(long v) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        while ((v & ~0x7fL) != 0) {
            o.write((int) ((v & 0x7f) | 0x80));
            v >>>= 7;
        }
        o.write((int) v);
        return o.toByteArray();
    }

    private static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            o.writeBytes(p);
        }
        return o.toByteArray();
    }
}
