package org.babaiquant.cli;

import dev.ludovic.netlib.blas.BLAS;
import org.babaiquant.BadInputException;
import org.babaiquant.core.Half;
import org.babaiquant.core.Json;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.io.SafeTensorsWriter;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.stream.IntStream;

/**
 * {@code generate-llama}: a synthetic Llama-shaped model (TinyLlama-1.1B's layout by default) and calibration
 * activations for every quantized linear's input site, to run the pipeline at 1 B parameters without downloading one.
 *
 * <p>Written under OUT: {@code model/} — bf16 safetensors, one shard per decoder layer plus one for the embedding and
 * one for the final norm and lm_head, with {@code model.safetensors.index.json} and a {@code config.json};
 * {@code activations/layer-NN.safetensors} — bf16 [tokens, d] tensors named by the sites of the default layer map
 * ({@code layers.N.attn_in}, {@code .o_proj_in}, {@code .mlp_in}, {@code .down_proj_in}); {@code import-sites.yaml} —
 * the pipeline's {@code import.safetensors} list for them. One shard is in memory at a time (≤ 131 MiB at the default
 * shape), never the model. The same options and seed give the same bytes.
 *
 * <p>Statistics, chosen because they are what makes quantizing a real LLM harder than quantizing noise:
 * <ul>
 *   <li>weights W[r][c] = σ·s_r·t_c·ε with Laplace ε (unit variance; LLM weights are heavier-tailed than Gaussian),
 *       a log-normal per-output-channel scale s_r = exp(0.4·z) (rows differ in range several-fold, which group scales
 *       must absorb), and t_c = 3 on 0.25% of input channels (salient columns), else 1;</li>
 *   <li>activations x = Σ_k g_k·σ_k·u_k + noise: 64 random directions u_k with a power-law spectrum σ_k² ∝ k^-1.6
 *       over an isotropic floor (~2% of the mean diagonal) — the covariance of real activations decays like this, and
 *       the ill-conditioning of H = XᵀX is what lets GPTQ/Babai beat round-to-nearest (for isotropic H they coincide);</li>
 *   <li>the residual-stream sites (attn_in, mlp_in) carry 6 fixed outlier channels of magnitude ~20 (≈14× a typical
 *       entry) with a consistent sign, the same channels in every layer, as LLM.int8/SmoothQuant's "outlier features"; o_proj_in
 *       (attention outputs) has none; down_proj_in is SiLU(a)·b of two such draws, the gated MLP's heavy tail.</li>
 * </ul>
 */
@Command(name = "generate-llama", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Write a synthetic Llama-shaped bf16 model (sharded safetensors + index; TinyLlama-1.1B layout by",
                "default) and calibration activations with realistic statistics for every quantized linear's input site."})
public final class GenerateLlamaCommand implements Callable<Integer> {
    /** Latent directions of the activation model, its spectral decay and noise floor. */
    static final int RANK = 64;
    static final double DECAY = 0.8;
    static final double FLOOR = 0.2;
    static final int OUTLIER_CHANNELS = 6;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "output folder (created; must be empty or absent)")
    Path out;

    @Option(names = "--layers", defaultValue = "22", description = "decoder layers (default: ${DEFAULT-VALUE})")
    int layers;

    @Option(names = "--hidden", defaultValue = "2048", description = "hidden size (default: ${DEFAULT-VALUE})")
    int hidden;

    @Option(names = "--intermediate", defaultValue = "5632", description = "MLP intermediate size (default: ${DEFAULT-VALUE})")
    int intermediate;

    @Option(names = "--heads", defaultValue = "32", description = "attention heads (default: ${DEFAULT-VALUE})")
    int heads;

    @Option(names = "--kv-heads", defaultValue = "4", description = "key/value heads, grouped-query attention (default: ${DEFAULT-VALUE})")
    int kvHeads;

    @Option(names = "--vocab", defaultValue = "32000", description = "vocabulary size (default: ${DEFAULT-VALUE})")
    int vocab;

    @Option(names = "--tokens", defaultValue = "2048", description = "calibration tokens per site (default: ${DEFAULT-VALUE})")
    int tokens;

    @Option(names = "--seed", defaultValue = "1", description = "random seed (default: ${DEFAULT-VALUE})")
    long seed;

    /** One linear of a decoder layer: HF name suffix, [out, in]. */
    record Linear(String name, int rows, int cols) {}

    List<Linear> linears() {
        int kv = hidden / heads * kvHeads;
        return List.of(new Linear("self_attn.q_proj", hidden, hidden), new Linear("self_attn.k_proj", kv, hidden),
                new Linear("self_attn.v_proj", kv, hidden), new Linear("self_attn.o_proj", hidden, hidden),
                new Linear("mlp.gate_proj", intermediate, hidden), new Linear("mlp.up_proj", intermediate, hidden),
                new Linear("mlp.down_proj", hidden, intermediate));
    }

    @Override
    public Integer call() throws IOException {
        if (layers < 1 || hidden < 1 || intermediate < 1 || heads < 1 || kvHeads < 1 || vocab < 1 || tokens < 1
                || hidden % heads != 0 || heads % kvHeads != 0) {
            throw new BadInputException("generate-llama: sizes must be ≥ 1, --hidden a multiple of --heads and --heads of --kv-heads");
        }
        if (Files.exists(out) && (!Files.isDirectory(out) || Files.list(out).findAny().isPresent())) {
            throw new BadInputException("generate-llama: " + out + " exists and is not an empty folder");
        }
        Path model = Files.createDirectories(out.resolve("model"));
        Path acts = Files.createDirectories(out.resolve("activations"));
        int shards = layers + 2;
        Map<String, String> weightMap = new TreeMap<>();
        long total = 0;
        long params = 0;
        long t0 = System.nanoTime();
        // shard 1: the embedding; 2..L+1: one decoder layer each; L+2: final norm and lm_head
        total += writeShard(model, 1, shards, List.of(matrix("model.embed_tokens.weight", vocab, hidden, 1.0, seed)), weightMap);
        params += (long) vocab * hidden;
        StringBuilder sites = new StringBuilder("# import.safetensors for generate-llama's activations (written by generate-llama)\n");
        for (int l = 0; l < layers; l++) {
            List<SafeTensorsWriter.RawTensor> ts = new ArrayList<>();
            String p = "model.layers." + l + ".";
            ts.add(norm(p + "input_layernorm.weight", l * 2L));
            ts.add(norm(p + "post_attention_layernorm.weight", l * 2L + 1));
            int k = 0;
            for (Linear lin : linears()) {
                ts.add(matrix(p + lin.name() + ".weight", lin.rows(), lin.cols(), 0.02, seed * 1_000_003L + l * 16L + k++));
                params += (long) lin.rows() * lin.cols();
            }
            total += writeShard(model, l + 2, shards, ts, weightMap);
            writeActivations(acts, l, sites);
            System.out.printf(Locale.ROOT, "[generate-llama] layer %d/%d written, %.1f s%n", l + 1, layers, (System.nanoTime() - t0) / 1e9);
        }
        total += writeShard(model, shards, shards, List.of(norm("model.norm.weight", -1),
                matrix("lm_head.weight", vocab, hidden, 0.02, seed * 7919L)), weightMap);
        params += (long) vocab * hidden;
        Map<String, Object> index = new LinkedHashMap<>();
        index.put("metadata", Map.of("total_size", total));
        index.put("weight_map", weightMap);
        Files.writeString(model.resolve("model.safetensors.index.json"), Json.write(index), StandardCharsets.UTF_8);
        Map<String, Object> config = new LinkedHashMap<>();
        config.put("architectures", List.of("LlamaForCausalLM"));
        config.put("model_type", "llama");
        config.put("hidden_size", hidden);
        config.put("intermediate_size", intermediate);
        config.put("num_hidden_layers", layers);
        config.put("num_attention_heads", heads);
        config.put("num_key_value_heads", kvHeads);
        config.put("vocab_size", vocab);
        config.put("torch_dtype", "bfloat16");
        config.put("generated_by", "babai-quant generate-llama --seed " + seed);
        Files.writeString(model.resolve("config.json"), Json.write(config), StandardCharsets.UTF_8);
        Files.writeString(out.resolve("import-sites.yaml"), sites.toString(), StandardCharsets.UTF_8);
        System.out.printf(Locale.ROOT, "generate-llama: %d layers, %.3f B parameters (%d shards, %.2f GiB bf16) under %s; "
                        + "%d calibration tokens per site, %.1f s%n", layers, params / 1e9, shards, total / 1073741824.0,
                model, tokens, (System.nanoTime() - t0) / 1e9);
        return 0;
    }

    private static long writeShard(Path dir, int i, int n, List<SafeTensorsWriter.RawTensor> tensors, Map<String, String> weightMap) {
        String name = String.format(Locale.ROOT, "model-%05d-of-%05d.safetensors", i, n);
        SafeTensorsWriter.writeRaw(dir.resolve(name), tensors, Map.of("format", "pt"));
        long bytes = 0;
        for (SafeTensorsWriter.RawTensor t : tensors) {
            weightMap.put(t.name(), name);
            bytes += t.data().length;
        }
        return bytes;
    }

    /** RMSNorm weights: around 1 with a small spread. */
    private SafeTensorsWriter.RawTensor norm(String name, long salt) {
        SplittableRandom r = new SplittableRandom(seed ^ (0x5DEECE66DL * (salt + 3)));
        float[] v = new float[hidden];
        for (int i = 0; i < hidden; i++) {
            v[i] = (float) (1 + 0.1 * r.nextGaussian());
        }
        return new SafeTensorsWriter.RawTensor(name, "BF16", new long[] {hidden}, bf16(v, 0, hidden));
    }

    /**
     * W = σ·s_r·t_c·ε: Laplace ε, log-normal row scales, 0.25% salient columns ×3. Rows are drawn in parallel, each
     * from its own stream (seed, row), so the bytes do not depend on the thread count.
     */
    static SafeTensorsWriter.RawTensor matrix(String name, int rows, int cols, double sigma, long seed) {
        SplittableRandom cr = new SplittableRandom(seed);
        double[] colScale = new double[cols];
        for (int c = 0; c < cols; c++) {
            colScale[c] = cr.nextInt(400) == 0 ? 3.0 : 1.0;
        }
        byte[] data = new byte[Math.multiplyExact(rows * 2, cols)];
        IntStream.range(0, rows).parallel().forEach(r -> {
            SplittableRandom rr = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + r);
            double rowScale = sigma * Math.exp(0.4 * rr.nextGaussian());
            ByteBuffer b = ByteBuffer.wrap(data, r * 2 * cols, 2 * cols).order(ByteOrder.LITTLE_ENDIAN);
            for (int c = 0; c < cols; c++) {
                double u = rr.nextDouble();
                double laplace = (u < 0.5 ? Math.log(2 * u + Double.MIN_VALUE) : -Math.log(2 - 2 * u + Double.MIN_VALUE)) / Math.sqrt(2);
                b.putShort(Half.bf16FromFloat((float) (rowScale * colScale[c] * laplace)));
            }
        });
        return new SafeTensorsWriter.RawTensor(name, "BF16", new long[] {rows, cols}, data);
    }

    /** The four input sites of layer l, [tokens, d] bf16, in one file; appends its import entry to {@code sites}. */
    private void writeActivations(Path dir, int l, StringBuilder sites) {
        long s = seed * 31 + l;
        List<SafeTensorsWriter.RawTensor> ts = new ArrayList<>();
        String site = "layers." + l + ".";
        ts.add(site(site + "attn_in", latent(tokens, hidden, s * 4, true)));
        ts.add(site(site + "o_proj_in", latent(tokens, hidden, s * 4 + 1, false)));
        ts.add(site(site + "mlp_in", latent(tokens, hidden, s * 4 + 2, true)));
        float[] a = latent(tokens, intermediate, s * 4 + 3, false);
        float[] b = latent(tokens, intermediate, s * 4 + 5, false);
        for (int i = 0; i < a.length; i++) {
            a[i] = (float) (a[i] / (1 + Math.exp(-a[i])) * b[i]); // SiLU(gate) · up
        }
        ts.add(site(site + "down_proj_in", a));
        String file = String.format(Locale.ROOT, "layer-%02d.safetensors", l);
        SafeTensorsWriter.writeRaw(dir.resolve(file), ts, Map.of("format", "pt"));
        sites.append(String.format(Locale.ROOT, "- {file: '${work}/input/activations/%s', siteMap: {'%sattn_in': %sattn_in, "
                        + "'%so_proj_in': %so_proj_in, '%smlp_in': %smlp_in, '%sdown_proj_in': %sdown_proj_in}}%n",
                file, rx(site), site, rx(site), site, rx(site), site, rx(site), site));
    }

    private static String rx(String s) {
        return s.replace(".", "\\.");
    }

    private SafeTensorsWriter.RawTensor site(String name, float[] x) {
        return new SafeTensorsWriter.RawTensor(name, "BF16", new long[] {tokens, x.length / tokens}, bf16(x, 0, x.length));
    }

    /**
     * X = G·diag(σ)·Uᵀ + noise [+ outlier channels]: G [T, RANK] and U [d, RANK] standard Gaussian, σ_k = k^-DECAY,
     * noise FLOOR per entry. The covariance XᵀX/T then has RANK eigenvalues ≈ d·k^-2·DECAY above a flat floor FLOOR²
     * (its mean diagonal is Σσ_k² + FLOOR² ≈ 2.1, so the floor is ~2% of it: GPTQ's 1% damping does not hide it).
     */
    static float[] latent(int t, int d, long seed, boolean outliers) {
        SplittableRandom r = new SplittableRandom(seed);
        double[] g = new double[t * RANK];
        for (int i = 0; i < g.length; i++) {
            g[i] = r.nextGaussian() * Math.pow(i % RANK + 1, -DECAY);
        }
        double[] u = new double[d * RANK];
        for (int i = 0; i < u.length; i++) {
            u[i] = r.nextGaussian(); // unit entries: a token's norm grows like √d, as a hidden state's does
        }
        // X (column-major [d, t] = row-major [t, d]) = Uᵀ-rows · G: X[tok][c] = Σ_k U[c][k] G[tok][k]
        double[] x = new double[t * d];
        BLAS.getInstance().dgemm("T", "N", d, t, RANK, 1.0, u, RANK, g, RANK, 0.0, x, d);
        float[] out = new float[t * d];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) (x[i] + FLOOR * r.nextGaussian());
        }
        if (outliers) {
            SplittableRandom ch = new SplittableRandom(d * 7L); // the same channels in every layer
            for (int o = 0; o < OUTLIER_CHANNELS; o++) {
                int c = ch.nextInt(d);
                double sign = ch.nextBoolean() ? 1 : -1;
                for (int tok = 0; tok < t; tok++) {
                    out[tok * d + c] = (float) (sign * (20 + 2 * r.nextGaussian()));
                }
            }
        }
        return out;
    }

    private static byte[] bf16(float[] v, int from, int n) {
        ByteBuffer b = ByteBuffer.allocate(2 * n).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; i++) {
            b.putShort(Half.bf16FromFloat(v[from + i]));
        }
        return b.array();
    }
}
