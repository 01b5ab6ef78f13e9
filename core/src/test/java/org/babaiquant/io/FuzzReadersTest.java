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
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Every reader of untrusted bytes, fed thousands of seeded mutations (bit flips, overwritten bytes, huge length
 * fields, truncations, garbage tails) of a valid file: each case either reads or ends in {@link BadInputException}
 * (the CLI's exit 2) — never another exception, never a hang (a time limit per format), and never an allocation far
 * beyond the file's size (measured per case with the thread's allocation counter: a corrupt length must not make a
 * reader allocate gigabytes). Seeded, so a failure names a reproducible case.
 */
class FuzzReadersTest {
    private static final int CASES = 3000;
    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    @TempDir
    Path dir;

    interface Reader {
        void read(byte[] bytes) throws Exception;
    }

    /** Mutates {@code seed} {@link #CASES} times and checks every outcome. */
    private static void fuzz(String format, byte[] seed, long rngSeed, Reader reader) {
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> {
            reader.read(seed); // the seed itself must be valid
            Random rnd = new Random(rngSeed);
            int bad = 0;
            for (int i = 0; i < CASES; i++) {
                byte[] b = mutate(rnd, seed);
                long before = THREADS.getCurrentThreadAllocatedBytes();
                try {
                    reader.read(b);
                } catch (BadInputException e) {
                    bad++;
                    assertTrue(e.getMessage() != null && !e.getMessage().isBlank(), format + " case " + i);
                } catch (Throwable t) {
                    fail(format + " case " + i + " (seed " + rngSeed + ", " + b.length + " bytes) threw " + t, t);
                }
                long allocated = THREADS.getCurrentThreadAllocatedBytes() - before;
                // values widen to float64 (8x an fp16 input), plus a fixed allowance for buffers and messages
                long limit = 64L * b.length + (8L << 20);
                assertTrue(allocated <= limit, format + " case " + i + " allocated " + allocated + " bytes for a "
                        + b.length + "-byte file");
            }
            assertTrue(bad > CASES / 10, format + ": mutations must mostly be rejected, only " + bad + " were");
        }, format + " reader hung");
    }

    private static byte[] mutate(Random rnd, byte[] seed) {
        byte[] b = seed.clone();
        switch (rnd.nextInt(6)) {
            case 0 -> { // flip bits
                for (int k = 1 + rnd.nextInt(4); k > 0; k--) {
                    int at = rnd.nextInt(b.length);
                    b[at] ^= (byte) (1 << rnd.nextInt(8));
                }
            }
            case 1 -> { // overwrite bytes
                for (int k = 1 + rnd.nextInt(8); k > 0; k--) {
                    b[rnd.nextInt(b.length)] = (byte) rnd.nextInt(256);
                }
            }
            case 2 -> { // a huge or negative little-endian length / count somewhere in the first bytes
                int at = rnd.nextInt(Math.max(1, Math.min(b.length - 4, 64)));
                int v = rnd.nextBoolean() ? Integer.MAX_VALUE - rnd.nextInt(16) : -1 - rnd.nextInt(1 << 20);
                for (int k = 0; k < 4 && at + k < b.length; k++) {
                    b[at + k] = (byte) (v >>> (8 * k));
                }
            }
            case 3 -> b = Arrays.copyOf(b, rnd.nextInt(b.length)); // truncate
            case 4 -> { // garbage tail
                byte[] t = new byte[1 + rnd.nextInt(64)];
                rnd.nextBytes(t);
                byte[] c = Arrays.copyOf(b, b.length + t.length);
                System.arraycopy(t, 0, c, b.length, t.length);
                b = c;
            }
            default -> { // truncate and flip
                b = Arrays.copyOf(b, 1 + rnd.nextInt(b.length));
                b[rnd.nextInt(b.length)] ^= (byte) 0xff;
            }
        }
        return b;
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
        Npy.writeF32(valid, m);
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
        SafeTensors.writeRaw(out, List.of(new SafeTensors.RawTensor("a.weight", "F32", new long[] {3, 4}, f32),
                new SafeTensors.RawTensor("b", "F16", new long[] {2, 4}, f16)), Map.of("format", "pt"));
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
        fuzz("shard index", seed, 103, b -> SafeTensors.readIndex(ByteSource.of("model.safetensors.index.json", b)));
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
