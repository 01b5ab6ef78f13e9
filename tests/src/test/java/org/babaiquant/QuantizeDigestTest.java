package org.babaiquant;

import org.babaiquant.io.SafeTensorsWriter;
import org.apache.hadoop.conf.Configuration;
import org.apache.parquet.example.data.Group;
import org.babaiquant.cli.MiniLmLayer0;
import org.babaiquant.io.Npy;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.nonclip.BitBudget;
import org.babaiquant.spark.ActivationImporter;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.QuantizedLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * The same results before and after the method seam: every run the demo makes (RTN natural, GPTQ act-order, Babai
 * min-pivot, SSQR and HPTQ at 3 and 4 bits, groups of 128, asymmetric; {@code DemoCommand.runs}) is made through the
 * {@code quantize} command on real local Spark over two of the bundled MiniLM layer-0 linears, q_proj (site attn_in,
 * 384 rows: two shard row blocks) and o_proj (site o_proj_in), and each layer's stored data (every shard column but
 * the fingerprint: codes, scales, zeros, perm, SSQR/HPTQ payload, ...), its per-row table and its report figures
 * (loss, bound, clipped, bits/weight, exact to the last bit) are compared with {@code seam-digest.txt}, recorded on
 * main at ccdc996 before the seam was built.
 *
 * <p>Re-record (only when a change of results is intended and documented) with
 * {@code -Dbabai.digest.record=/abs/path/seam-digest.txt}.
 */
class QuantizeDigestTest {
    private static final Configuration CONF = new Configuration();
    private static final Map<String, String> LAYERS = new LinkedHashMap<>(Map.of(
            "q_proj", QuantizeStageTest.HF_NAMES.get("q_proj"), "o_proj", QuantizeStageTest.HF_NAMES.get("o_proj")));

    @Test
    void quantizeGivesTheRecordedShardsAndReports(@TempDir Path tmp) throws IOException {
        SparkTestSession.get();
        Path dir = RealData.miniLm();
        LinkedHashMap<String, double[][]> tensors = new LinkedHashMap<>();
        List<ActivationImporter.Source> calib = new ArrayList<>();
        for (MiniLmLayer0.Linear lin : MiniLmLayer0.LINEARS) {
            if (LAYERS.containsKey(lin.name())) {
                tensors.put(LAYERS.get(lin.name()), Npy.readMatrix(lin.weight(dir)));
                calib.add(new ActivationImporter.Source("layer0_" + lin.site(), lin.calib(dir), null));
            }
        }
        Path model = tmp.resolve("model.safetensors");
        SafeTensorsWriter.write(model, tensors, "F32");
        new ActivationImporter(CONF, 64).run(calib, tmp.resolve("act").toString(), false);
        Path hessians = tmp.resolve("h");
        HessianJob.run(SparkTestSession.get(), new HessianJob.Config(tmp.resolve("act").toString(), hessians.toString(), List.of(),
                2, 8, 512, false), s -> { });

        List<String> lines = new ArrayList<>();
        for (int bits : new int[] {3, 4}) {
            String target = Double.toString(BitBudget.checkpointBits(384, 384, bits, 128));
            for (String method : new String[] {"rtn", "gptq", "babai", "ssqr", "hptq"}) {
                String order = switch (method) {
                    case "rtn" -> "natural";
                    case "babai" -> "min-pivot";
                    default -> "act-order";
                };
                Path out = tmp.resolve(method + "-" + bits);
                List<String> args = new ArrayList<>(List.of("quantize", "--model", model.toString(), "--hessians", hessians.toString(),
                        "--out", out.toString(), "--method", method, "--bits", String.valueOf(bits), "--group-size", "128",
                        "--order", order, "--damp", "0.01", "--block-size", "128", "--backend", "auto"));
                if (method.equals("ssqr") || method.equals("hptq")) {
                    args.addAll(List.of("--target-bits", target, "--outlier-rate", "0.01"));
                }
                QuantizeLayerCliTest.Run r = QuantizeLayerCliTest.run(args.toArray(String[]::new));
                assertEquals(0, r.status(), r.err());
                lines.addAll(digest(method + "-" + bits + "bit", out));
            }
        }
        String record = System.getProperty("babai.digest.record");
        if (record != null) {
            Files.write(Path.of(record), lines, StandardCharsets.UTF_8);
        }
        List<String> want;
        try (InputStream in = QuantizeDigestTest.class.getResourceAsStream("/seam-digest.txt")) {
            assertNotNull(in, "seam-digest.txt is missing from the test resources");
            want = new String(in.readAllBytes(), StandardCharsets.UTF_8).lines().filter(l -> !l.startsWith("#")).toList();
        }
        assertEquals(String.join("\n", want), String.join("\n", lines));
    }

    /** One line per layer: SHA-256 of its shard data and of its per-row table, and its report's figures. */
    private static List<String> digest(String run, Path out) {
        Map<String, MessageDigest> shards = new TreeMap<>();
        QuantizedLayout.readAll(CONF, out.toString(), "shards", g -> {
            MessageDigest md = shards.computeIfAbsent(g.getString("layer", 0), k -> sha256());
            for (String f : new String[] {"method", "order", "dtype", "codes_packing", "representation"}) {
                update(md, g.getString(f, 0).getBytes(StandardCharsets.UTF_8));
            }
            for (String f : new String[] {"bits", "group_size", "rows", "cols", "row_start", "row_count", "format_version"}) {
                update(md, Integer.toString(g.getInteger(f, 0)).getBytes(StandardCharsets.UTF_8));
            }
            for (String f : new String[] {"sym", "clip"}) {
                update(md, Boolean.toString(g.getBoolean(f, 0)).getBytes(StandardCharsets.UTF_8));
            }
            for (String f : new String[] {"codes", "scales", "zeros", "perm", "payload"}) {
                update(md, g.getBinary(f, 0).getBytes());
            }
        });
        Map<String, MessageDigest> rows = new TreeMap<>();
        QuantizedLayout.readAll(CONF, out.toString(), "rows", g -> update(rows.computeIfAbsent(g.getString("layer", 0), k -> sha256()),
                (g.getInteger("row", 0) + " " + g.getDouble("loss", 0) + " " + g.getDouble("bound", 0) + " "
                        + g.getInteger("clipped", 0)).getBytes(StandardCharsets.UTF_8)));
        List<String> lines = new ArrayList<>();
        QuantizedLayout.readAll(CONF, out.toString(), "reports", (Group g) -> {
            String layer = g.getString("layer", 0);
            lines.add(run + " " + layer + " shards=" + HexFormat.of().formatHex(shards.get(layer).digest())
                    + " rows=" + HexFormat.of().formatHex(rows.get(layer).digest())
                    + " method=" + g.getString("method", 0) + " bits=" + g.getInteger("bits", 0)
                    + " loss=" + g.getDouble("loss", 0) + " bound=" + g.getDouble("bound", 0)
                    + " clipped=" + g.getLong("clipped", 0) + " bpw=" + g.getDouble("bits_per_weight", 0));
        });
        assertEquals(2, lines.size(), run);
        return lines;
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Length-prefixed, so that field boundaries cannot shift between runs. */
    private static void update(MessageDigest md, byte[] b) {
        md.update(Integer.toString(b.length).getBytes(StandardCharsets.UTF_8));
        md.update((byte) ':');
        md.update(b);
    }
}
