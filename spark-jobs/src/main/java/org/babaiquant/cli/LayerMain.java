package org.babaiquant.cli;

import org.babaiquant.BadInputException;
import org.babaiquant.core.QuantBackend;
import picocli.CommandLine;

import java.io.UncheckedIOException;

/**
 * {@code quantize-layer} alone, for a class path without Spark (the GPU bundle: core, gpu-native, picocli, jcuda and
 * these CLI classes): {@code java -cp ... org.babaiquant.cli.LayerMain [quantize-layer] ARGS}. Same options, output
 * and exit status as {@code babai-quant quantize-layer} ({@link Main}): 0 done; 2 bad input or usage, one line
 * naming the file/tensor/index, nothing committed (here also {@code --backend cuda} where CUDA cannot run: the
 * reason); 1 an internal error. {@link Main} cannot serve here: picocli reads
 * every subcommand's fields, and the Spark commands' types are absent.
 */
public final class LayerMain {
    private LayerMain() {}

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** Runs quantize-layer in-process and returns the exit status. */
    public static int run(String... args) {
        String[] a = args.length > 0 && args[0].equals("quantize-layer")
                ? java.util.Arrays.copyOfRange(args, 1, args.length) : args;
        CommandLine cmd = new CommandLine(new QuantizeLayerCommand());
        cmd.setExecutionExceptionHandler((ex, cl, parsed) -> {
            BadInputException bad = null;
            for (Throwable c = ex; c != null && bad == null; c = c.getCause()) {
                bad = c instanceof BadInputException b ? b : null;
            }
            if (bad != null || ex instanceof IllegalArgumentException || ex instanceof UncheckedIOException
                    || ex instanceof QuantBackend.UnavailableException) {
                cl.getErr().println("babai-quant quantize-layer: error: " + (bad != null ? bad : ex).getMessage());
                return 2;
            }
            throw ex;
        });
        return cmd.execute(a);
    }
}
