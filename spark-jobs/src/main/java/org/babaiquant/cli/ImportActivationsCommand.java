package org.babaiquant.cli;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.BadInputException;
import org.babaiquant.io.Names;
import org.babaiquant.spark.ActivationImporter;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code import-activations}: NumPy / safetensors activation dumps → the Parquet activation layout. */
@Command(name = "import-activations", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Convert activation dumps into the Parquet activation layout (one dataset, partitioned by input site),",
                "streaming 64-token tiles. Sources of one site are appended in argument order (that order is the",
                "canonical token order of the Hessian). Output may be any Hadoop URI (local path, file:, s3a:)."})
public final class ImportActivationsCommand implements Callable<Integer> {
    @Option(names = "--npy", paramLabel = "SITE=FILE.npy", description = "a float32/float64 [tokens, d] dump feeding SITE (repeatable)")
    List<String> npy = new ArrayList<>();

    @Option(names = "--safetensors", paramLabel = "FILE", description = "a safetensors file of activations [..., d] (F32/F16/BF16/F64; repeatable)")
    List<Path> safetensors = new ArrayList<>();

    @Option(names = "--site-map", paramLabel = "REGEX=SITE",
            description = "tensors of the --safetensors files whose name matches REGEX feed SITE (repeatable; a rule matching nothing is an error)")
    Map<String, String> siteMap = new LinkedHashMap<>();

    @Option(names = "--out", required = true, paramLabel = "URI", description = "dataset root")
    String out;

    @Option(names = "--tile-rows", defaultValue = "64", description = "tokens per tile, 1..64 (default: ${DEFAULT-VALUE})")
    int tileRows;

    @Option(names = "--overwrite", description = "replace sites that already exist under --out")
    boolean overwrite;

    @Override
    public Integer call() {
        List<ActivationImporter.Source> sources = new ArrayList<>();
        for (String spec : npy) {
            int eq = spec.indexOf('=');
            if (eq <= 0) {
                throw new BadInputException("--npy expects SITE=FILE.npy, got '" + spec + "'");
            }
            Names.site(spec.substring(0, eq), "--npy"); // before anything: the name becomes a folder of --out
            Path file = Path.of(spec.substring(eq + 1));
            if (!file.toFile().isFile()) {
                throw new BadInputException("no such file: " + file);
            }
            sources.add(new ActivationImporter.Source(spec.substring(0, eq), file, null));
        }
        siteMap.values().forEach(site -> Names.site(site, "--site-map"));
        if (!safetensors.isEmpty() && siteMap.isEmpty()) {
            throw new BadInputException("--safetensors needs at least one --site-map REGEX=SITE");
        }
        for (Path f : safetensors) {
            sources.addAll(ActivationImporter.safetensorsSources(f, siteMap));
        }
        if (sources.isEmpty()) {
            throw new BadInputException("nothing to import: give --npy SITE=FILE or --safetensors FILE --site-map REGEX=SITE");
        }
        for (ActivationImporter.Imported i : new ActivationImporter(org.babaiquant.spark.HadoopConfs.fromEnvironmentAndSpark(), tileRows).run(sources, out, overwrite)) {
            System.out.printf("site %s: %d tokens in %d tiles, d=%d, %s%n", i.site(), i.tokens(), i.tiles(), i.dim(), i.dtype());
        }
        System.out.println("wrote " + out);
        return 0;
    }
}
