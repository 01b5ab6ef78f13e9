package org.babaiquant.cli;

import org.apache.hadoop.fs.Path;
import org.babaiquant.BadInputException;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.onnx.ActivationCapture;
import org.babaiquant.onnx.BundledMiniLm;
import org.babaiquant.spark.ActivationImporter;
import org.babaiquant.spark.HadoopConfs;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.QuantizeJob;
import org.yaml.snakeyaml.DumperOptions;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The validated config: every key of conf/pipeline.yaml, with ${name} substituted and defaults applied. */
final class PipelinePlan {
    List<String> stages;
    String master;
    String hadoopConf;
    String modelUri;
    Map<String, String> modelFromNpy = new LinkedHashMap<>();
    String modelDtype;
    String captureOut;
    String captureOnnx;
    String captureTokenizer;
    List<String> captureText;
    int captureSamples;
    int captureMaxLen;
    long captureSeed;
    int captureRowsPerSeq;
    int capturePartitions;
    String captureIfExists;
    String importOut;
    int tileRows;
    String ifExists;
    Map<String, List<String>> importSites = new LinkedHashMap<>();
    List<Map<String, Object>> importSafetensors = new ArrayList<>();
    String evalOut;
    Map<String, List<String>> evalSites = new LinkedHashMap<>();
    String hessianOut;
    int partitions;
    int sliceTiles;
    int hessianBlockSize;
    List<String> hessianSites;
    boolean hessianForce;
    String quantizeOut;
    Map<String, Object> quantize;
    String exportOut;
    String exportFormat;
    boolean exportGIdx;
    private Map<String, Object> resolved;

    static PipelinePlan load(java.nio.file.Path file, List<String> sets, List<String> stagesOverride, String masterOverride) {
        Map<String, Object> root;
        try (InputStream in = Files.newInputStream(file)) {
            Object y = new Yaml(new SafeConstructor(new LoaderOptions())).load(in);
            if (!(y instanceof Map)) {
                throw new BadInputException(file + ": a pipeline config is a YAML mapping (see conf/pipeline.yaml)");
            }
            root = deepCopy(y);
        } catch (IOException e) {
            throw new BadInputException("cannot read the pipeline config " + file + ": " + e.getMessage(), e);
        } catch (org.yaml.snakeyaml.error.YAMLException e) {
            throw new BadInputException(file + ": not valid YAML: " + e.getMessage(), e);
        }
        for (String s : sets) {
            int eq = s.indexOf('=');
            if (eq <= 0) {
                throw new BadInputException("--set expects KEY=VALUE, got '" + s + "'");
            }
            put(root, s.substring(0, eq), new Yaml(new SafeConstructor(new LoaderOptions())).load(s.substring(eq + 1)));
        }
        Map<String, Object> vars = new TreeMap<>();
        root.forEach((k, v) -> {
            if (v instanceof String || v instanceof Number || v instanceof Boolean) {
                vars.put(k, v);
            }
        });
        root = substitute(root, vars, file);
        PipelinePlan p = new PipelinePlan();
        p.resolved = root;
        p.fill(root, file, stagesOverride, masterOverride);
        return p;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> deepCopy(Object y) {
        Map<String, Object> m = new LinkedHashMap<>();
        ((Map<Object, Object>) y).forEach((k, v) -> m.put(String.valueOf(k), v instanceof Map ? deepCopy(v) : v));
        return m;
    }

    /** --set a.b.c=v: walks existing maps; a key of the last map may contain dots (tensor names) when given whole. */
    @SuppressWarnings("unchecked")
    private static void put(Map<String, Object> root, String key, Object value) {
        Map<String, Object> m = root;
        String rest = key;
        while (!m.containsKey(rest) && rest.contains(".")) {
            String head = rest.substring(0, rest.indexOf('.'));
            Object next = m.get(head);
            if (!(next instanceof Map)) {
                if (next != null) {
                    break;
                }
                next = new LinkedHashMap<String, Object>();
                m.put(head, next);
            }
            m = (Map<String, Object>) next;
            rest = rest.substring(head.length() + 1);
        }
        m.put(rest, value);
    }

    @SuppressWarnings("unchecked")
    private static <T> T substitute(T node, Map<String, Object> vars, java.nio.file.Path file) {
        if (node instanceof String s) {
            Matcher m = Pattern.compile("\\$\\{([A-Za-z0-9_.-]+)}").matcher(s);
            StringBuilder sb = new StringBuilder();
            while (m.find()) {
                Object v = vars.get(m.group(1));
                if (v == null) {
                    throw new BadInputException(file + ": ${" + m.group(1) + "} is not a top-level value of the config");
                }
                m.appendReplacement(sb, Matcher.quoteReplacement(String.valueOf(v)));
            }
            m.appendTail(sb);
            return (T) sb.toString();
        }
        if (node instanceof Map<?, ?> map) {
            Map<String, Object> out = new LinkedHashMap<>();
            map.forEach((k, v) -> out.put(String.valueOf(k), substitute(v, vars, file)));
            return (T) out;
        }
        if (node instanceof List<?> list) {
            List<Object> out = new ArrayList<>();
            list.forEach(v -> out.add(substitute(v, vars, file)));
            return (T) out;
        }
        return node;
    }

    private void fill(Map<String, Object> root, java.nio.file.Path file, List<String> stagesOverride, String masterOverride) {
        Section top = new Section(file, "", root, Set.of("work", "stages", "spark", "model", "capture", "import", "hessian", "quantize", "report", "export"));
        String work = top.str("work", null);
        stages = stagesOverride != null ? stagesOverride : top.strList("stages", PipelineCommand.ALL_STAGES);
        for (String s : stages) {
            if (!PipelineCommand.ALL_STAGES.contains(s)) {
                throw new BadInputException(file + ": unknown stage '" + s + "' (stages: " + PipelineCommand.ALL_STAGES + ")");
            }
        }
        stages = PipelineCommand.ALL_STAGES.stream().filter(stages::contains).toList(); // always in pipeline order

        Section spark = top.section("spark", Set.of("master", "hadoopConf"));
        master = masterOverride != null ? masterOverride : spark.str("master", null);
        hadoopConf = spark.str("hadoopConf", null);

        Object model = root.get("model");
        if (model instanceof String s) {
            modelUri = s.equals(PipelineCommand.BUNDLED_MINILM) ? BundledMiniLm.onnx().toString() : s;
            modelDtype = "F32";
        } else {
            Section ms = top.section("model", Set.of("uri", "fromNpy", "dtype"));
            modelUri = ms.str("uri", work == null ? null : work + "/model/model.safetensors");
            ms.strMap("fromNpy").forEach((k, v) -> modelFromNpy.put(k, String.valueOf(v)));
            modelDtype = ms.str("dtype", "F32");
            if (!List.of("F32", "F16", "BF16").contains(modelDtype)) {
                throw new BadInputException(file + ": model.dtype must be F32, F16 or BF16, got " + modelDtype);
            }
        }

        Section im = top.section("import", Set.of("out", "tileRows", "ifExists", "sites", "safetensors", "eval"));
        importOut = im.str("out", work == null ? null : work + "/activations");
        Section ca = top.section("capture", Set.of("out", "onnx", "tokenizer", "text", "samples", "maxLen", "seed", "rowsPerSeq",
                "partitions", "ifExists"));
        captureText = ca.strList("text", List.of());
        captureOut = ca.str("out", importOut);
        captureOnnx = ca.str("onnx", modelUri != null && modelUri.endsWith(".onnx") ? modelUri : null);
        captureTokenizer = ca.str("tokenizer", null);
        captureSamples = ca.integer("samples", 0);
        captureMaxLen = ca.integer("maxLen", 128);
        captureSeed = ca.integer("seed", 1234);
        captureRowsPerSeq = ca.integer("rowsPerSeq", 0);
        capturePartitions = ca.integer("partitions", 0);
        captureIfExists = ca.str("ifExists", "skip");
        if (!List.of("skip", "overwrite", "fail").contains(captureIfExists)) {
            throw new BadInputException(file + ": capture.ifExists must be skip, overwrite or fail, got " + captureIfExists);
        }
        tileRows = im.integer("tileRows", 64);
        ifExists = im.str("ifExists", "skip");
        if (!List.of("skip", "overwrite", "fail").contains(ifExists)) {
            throw new BadInputException(file + ": import.ifExists must be skip, overwrite or fail, got " + ifExists);
        }
        im.strMap("sites").forEach((k, v) -> importSites.put(k, asList(v)));
        for (Object o : im.list("safetensors")) {
            if (!(o instanceof Map)) {
                throw new BadInputException(file + ": import.safetensors entries are {file: F, siteMap: {REGEX: SITE}}");
            }
            importSafetensors.add(deepCopy(o));
        }
        Section ev = im.section("eval", Set.of("out", "sites"));
        ev.strMap("sites").forEach((k, v) -> evalSites.put(k, asList(v)));
        evalOut = evalSites.isEmpty() ? null : ev.str("out", work == null ? null : work + "/eval-activations");

        Section he = top.section("hessian", Set.of("out", "partitions", "sliceTiles", "blockSize", "sites", "force"));
        hessianOut = he.str("out", work == null ? null : work + "/hessians");
        partitions = he.integer("partitions", 0);
        sliceTiles = he.integer("sliceTiles", 256);
        hessianBlockSize = he.integer("blockSize", 512);
        hessianSites = he.strList("sites", List.of());
        hessianForce = he.bool("force", false);

        Section q = top.section("quantize", Set.of("out", "method", "bits", "groupSize", "sym", "mse", "order", "clip", "damp",
                "blockSize", "layers", "map", "mapFile", "evalActivations", "evalTokens", "backend", "force", "starved"));
        quantizeOut = q.str("out", work == null ? null : work + "/quantized");
        quantize = q.values;
        top.section("report", Set.of());
        Section ex = top.section("export", Set.of("out", "format", "gIdx"));
        exportOut = ex.str("out", work == null ? null : work + "/gptq");
        exportFormat = ex.str("format", "gptq");
        exportGIdx = ex.bool("gIdx", false);
        if (!org.babaiquant.spark.Exports.FORMATS.contains(exportFormat)) {
            throw new BadInputException(file + ": export.format must be one of " + org.babaiquant.spark.Exports.FORMATS + ", got " + exportFormat);
        }

        for (String s : stages) {
            switch (s) {
                case "capture" -> {
                    need(file, "capture.out", captureOut);
                    if (captureText.isEmpty()) {
                        throw new BadInputException(file + ": the capture stage needs capture.text (paragraph files)");
                    }
                    captureConfig(); // validates files and options
                }
                case "import" -> {
                    need(file, "import.out", importOut);
                    if (importSites.isEmpty() && importSafetensors.isEmpty()) {
                        throw new BadInputException(file + ": the import stage needs import.sites or import.safetensors");
                    }
                    importSources(importSites, importSafetensors); // validates files and rules
                    importSources(evalSites, List.of());
                }
                case "hessian" -> {
                    need(file, captureText.isEmpty() ? "import.out" : "capture.out", activations());
                    need(file, "hessian.out", hessianOut);
                    hessianConfig(1);
                }
                case "quantize" -> {
                    need(file, "model", modelUri);
                    need(file, "hessian.out", hessianOut);
                    need(file, "quantize.out", quantizeOut);
                    quantizeConfig();
                }
                case "report" -> need(file, "quantize.out", quantizeOut);
                case "export" -> {
                    need(file, "model", modelUri);
                    need(file, "export.out", exportOut);
                    need(file, "quantize.out", quantizeOut);
                }
                default -> throw new IllegalStateException(s);
            }
        }
    }

    private static void need(java.nio.file.Path file, String key, String v) {
        if (v == null || v.isBlank()) {
            throw new BadInputException(file + ": " + key + " is required (or set work: to derive it)");
        }
    }

    private static List<String> asList(Object v) {
        if (v instanceof List<?> l) {
            return l.stream().map(String::valueOf).toList();
        }
        return List.of(String.valueOf(v));
    }

    Map<String, List<ActivationImporter.Source>> importSources(Map<String, List<String>> sites, List<Map<String, Object>> safetensors) {
        Map<String, List<ActivationImporter.Source>> bySite = new LinkedHashMap<>();
        sites.forEach((site, files) -> {
            for (String f : files) {
                java.nio.file.Path p = java.nio.file.Path.of(f);
                if (!Files.isRegularFile(p)) {
                    throw new BadInputException("import: no such file for site " + site + ": " + p.toAbsolutePath()
                            + " (import reads local files; relative paths are against the current directory)");
                }
                bySite.computeIfAbsent(site, k -> new ArrayList<>()).add(new ActivationImporter.Source(site, p, null));
            }
        });
        for (Map<String, Object> st : safetensors) {
            Map<String, String> rules = new LinkedHashMap<>();
            if (!(st.get("siteMap") instanceof Map<?, ?> sm) || st.get("file") == null) {
                throw new BadInputException("import.safetensors entries are {file: F, siteMap: {REGEX: SITE}}, got " + st);
            }
            sm.forEach((k, v) -> rules.put(String.valueOf(k), String.valueOf(v)));
            for (ActivationImporter.Source s : ActivationImporter.safetensorsSources(java.nio.file.Path.of(String.valueOf(st.get("file"))), rules)) {
                bySite.computeIfAbsent(s.site(), k -> new ArrayList<>()).add(s);
            }
        }
        return bySite;
    }

    /** What the Hessian stage reads: capture.out when the config has a capture section, else import.out. */
    String activations() {
        return captureText.isEmpty() ? importOut : captureOut;
    }

    ActivationCapture.Config captureConfig() {
        List<java.nio.file.Path> text = new ArrayList<>();
        for (String t : captureText) {
            java.nio.file.Path p = java.nio.file.Path.of(t);
            if (!Files.isRegularFile(p)) {
                throw new BadInputException("capture: no such text file: " + p.toAbsolutePath()
                        + " (relative paths are against the current directory)");
            }
            text.add(p);
        }
        java.nio.file.Path onnx = captureOnnx == null ? BundledMiniLm.onnx() : java.nio.file.Path.of(captureOnnx);
        java.nio.file.Path tok = captureTokenizer == null ? BundledMiniLm.tokenizer() : java.nio.file.Path.of(captureTokenizer);
        for (java.nio.file.Path f : List.of(onnx, tok)) {
            if (!Files.isRegularFile(f)) {
                throw new BadInputException("capture: no such file: " + f.toAbsolutePath() + " (capture reads a local ONNX model and tokenizer)");
            }
        }
        return new ActivationCapture.Config(onnx, tok, text, captureOut, captureSamples, captureMaxLen, captureSeed,
                captureRowsPerSeq, false);
    }

    HessianJob.Config hessianConfig(int defaultPartitions) {
        return new HessianJob.Config(activations(), hessianOut, hessianSites, partitions > 0 ? partitions : defaultPartitions, sliceTiles,
                hessianBlockSize, hessianForce);
    }

    QuantizeJob.Config quantizeConfig() {
        Section q = new Section(null, "quantize.", quantize, quantize.keySet());
        int bits = q.integer("bits", 4);
        int groupSize = q.integer("groupSize", 128);
        new QuantGrid.Spec(bits, groupSize, false, false); // validates early
        String backend = q.str("backend", "auto");
        if (!List.of("auto", "cpu", "cuda").contains(backend)) {
            throw new BadInputException("quantize.backend must be auto, cpu or cuda, got " + backend);
        }
        String evalActivations = q.str("evalActivations", evalOut);
        MethodSpec spec = new MethodSpec(q.str("method", "gptq"), new QuantGrid.Spec(bits, groupSize, q.bool("sym", false),
                q.bool("mse", false)), ColumnOrder.parse(q.str("order", "act-order")), q.bool("clip", true), q.dbl("damp", 0.01),
                q.integer("blockSize", 128), 6, 0.01, 0);
        return new QuantizeJob.Config(modelUri, hessianOut, quantizeOut, spec, q.str("layers", null), q.strList("map", List.of()),
                q.str("mapFile", null), evalActivations, q.integer("evalTokens", 2048), backend, 0, q.bool("force", false),
                org.babaiquant.core.StarvedExperts.Rule.parse(q.str("starved", "damp")));
    }

    String describe() {
        DumperOptions o = new DumperOptions();
        o.setDefaultFlowStyle(DumperOptions.FlowStyle.BLOCK);
        StringBuilder sb = new StringBuilder("# resolved pipeline config\n").append(new Yaml(o).dump(redacted(resolved)));
        sb.append("# stages: ").append(String.join(" → ", stages)).append('\n');
        for (String s : stages) {
            sb.append("# ").append(switch (s) {
                case "import" -> "import " + (importSites.size() + importSafetensors.size()) + " site source group(s) into " + importOut
                        + (evalOut == null ? "" : " and " + evalSites.size() + " held-out site(s) into " + evalOut)
                        + " (existing sites: " + ifExists + ")";
                case "capture" -> "capture " + (captureOnnx == null ? "the bundled all-MiniLM-L6-v2" : captureOnnx) + " on "
                        + captureText + " → " + captureOut + " (existing activations: " + captureIfExists + ")";
                case "hessian" -> "hessian " + activations() + " → " + hessianOut;
                case "quantize" -> "quantize " + modelUri + " with " + quantizeConfig().methodName() + " → " + quantizeOut;
                case "report" -> "report " + quantizeOut;
                case "export" -> "export " + quantizeOut + " → " + exportOut + " (" + exportFormat + ")";
                default -> s;
            }).append('\n');
        }
        if (hadoopConf != null && Files.isRegularFile(java.nio.file.Path.of(hadoopConf))) {
            sb.append("# Hadoop settings from ").append(hadoopConf).append(" (sensitive values redacted):\n");
            for (String line : HadoopConfs.describe(HadoopConfs.settings(hadoopConf)).split("\n")) {
                sb.append("#   ").append(line).append('\n');
            }
        } else if (hadoopConf != null) {
            sb.append("# Hadoop settings file ").append(hadoopConf).append(" is not on this machine (needed where the stages run)\n");
        }
        return sb.toString();
    }

    /** The config as it may be printed: values of sensitive keys ({@link HadoopConfs#sensitive}) replaced, at any depth. */
    static Object redacted(Object v) {
        if (v instanceof Map<?, ?> m) {
            Map<Object, Object> out = new LinkedHashMap<>();
            m.forEach((k, x) -> out.put(k, HadoopConfs.sensitive(String.valueOf(k)) ? "<redacted>" : redacted(x)));
            return out;
        }
        if (v instanceof List<?> l) {
            return l.stream().map(PipelinePlan::redacted).toList();
        }
        return v;
    }

    /** A mapping of the config with typed getters; unknown keys are an error (a typo must not be silently ignored). */
    static final class Section {
        final java.nio.file.Path file;
        final String prefix;
        final Map<String, Object> values;

        @SuppressWarnings("unchecked")
        Section(java.nio.file.Path file, String prefix, Map<String, Object> values, Set<String> allowed) {
            this.file = file;
            this.prefix = prefix;
            this.values = values == null ? Map.of() : values;
            for (String k : this.values.keySet()) {
                if (!allowed.contains(k)) {
                    throw new BadInputException(where() + "unknown key '" + prefix + k + "' (known: " + new java.util.TreeSet<>(allowed) + ")");
                }
            }
        }

        private String where() {
            return file == null ? "pipeline config: " : file + ": ";
        }

        @SuppressWarnings("unchecked")
        Section section(String key, Set<String> allowed) {
            Object v = values.get(key);
            if (v != null && !(v instanceof Map)) {
                throw new BadInputException(where() + prefix + key + " must be a mapping");
            }
            return new Section(file, prefix + key + ".", (Map<String, Object>) v, allowed);
        }

        String str(String key, String def) {
            Object v = values.get(key);
            return v == null ? def : String.valueOf(v);
        }

        int integer(String key, int def) {
            Object v = values.get(key);
            if (v == null) {
                return def;
            }
            if (v instanceof Integer i) {
                return i;
            }
            throw new BadInputException(where() + prefix + key + " must be an integer, got " + v);
        }

        double dbl(String key, double def) {
            Object v = values.get(key);
            if (v == null) {
                return def;
            }
            if (v instanceof Number n) {
                return n.doubleValue();
            }
            throw new BadInputException(where() + prefix + key + " must be a number, got " + v);
        }

        boolean bool(String key, boolean def) {
            Object v = values.get(key);
            if (v == null) {
                return def;
            }
            if (v instanceof Boolean b) {
                return b;
            }
            throw new BadInputException(where() + prefix + key + " must be true or false, got " + v);
        }

        List<Object> list(String key) {
            Object v = values.get(key);
            if (v == null) {
                return List.of();
            }
            if (v instanceof List<?> l) {
                return new ArrayList<>(l);
            }
            throw new BadInputException(where() + prefix + key + " must be a list");
        }

        List<String> strList(String key, List<String> def) {
            Object v = values.get(key);
            if (v == null) {
                return def;
            }
            if (v instanceof List<?> l) {
                return l.stream().map(String::valueOf).toList();
            }
            return List.of(String.valueOf(v).split(","));
        }

        @SuppressWarnings("unchecked")
        Map<String, Object> strMap(String key) {
            Object v = values.get(key);
            if (v == null) {
                return Map.of();
            }
            if (v instanceof Map) {
                return (Map<String, Object>) v;
            }
            throw new BadInputException(where() + prefix + key + " must be a mapping");
        }
    }
}
