package org.babaiquant.cli;

import org.babaiquant.BadInputException;
import org.babaiquant.spark.SparkSupport;
import org.babaiquant.spark.StorageFailures;
import org.babaiquant.spark.Uris;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.UncheckedIOException;

/** {@code bin/babai-quant}: the command line. Every subcommand has {@code --help}. */
@Command(name = "babai-quant", mixinStandardHelpOptions = true, version = "babai-quant 0.1.0-SNAPSHOT",
        description = "Lattice quantization of LLM weights: GPTQ as Babai's nearest-plane algorithm (arXiv 2507.18553).",
        subcommands = {QuantizeLayerCommand.class, ImportActivationsCommand.class, HessianCommand.class,
                HessianExportCommand.class, QuantizeCommand.class, ReportCommand.class, ExportCommand.class,
                DemoCommand.class, Layer0DemoCommand.class, CaptureCommand.class, ApplyCommand.class, EvaluateCommand.class,
                BenchCommand.class, BenchHessianCommand.class, BenchQuantizeCommand.class, CompareCommand.class,
                BenchHuffmanCommand.class, PipelineCommand.class, GenerateLlamaCommand.class,
                CommandLine.HelpCommand.class})
public final class Main implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /**
     * Runs the CLI in-process and returns the exit status (the contract in the README): 0 done; 2 bad input or usage,
     * one line naming the file/tensor/index, nothing committed; 75 the storage endpoint is unreachable, nothing partial
     * committed, rerun the same command; 1 an internal error (a bug: stack trace). No message printed here carries a
     * URI's user-info.
     */
    public static int run(String... args) {
        CommandLine cmd = new CommandLine(new Main());
        cmd.setExecutionExceptionHandler((ex, cl, parsed) -> {
            String prefix = "babai-quant " + cl.getCommandName() + ": error: ";
            String why = StorageFailures.unreachable(ex);
            if (why != null) {
                cl.getErr().println(prefix + "the storage endpoint is unreachable (" + why + "). Nothing partial was"
                        + " committed; this failure is retryable: rerun the same command when the endpoint is back.");
                return StorageFailures.EXIT_RETRYABLE;
            }
            // Spark wraps failures of tasks: the user's mistake is somewhere down the cause chain
            BadInputException bad = SparkSupport.badInput(ex);
            if (bad != null || ex instanceof IllegalArgumentException || ex instanceof UncheckedIOException) {
                cl.getErr().println(prefix + Uris.redact(bad != null ? bad.getMessage() : ex.getMessage()));
                return 2;
            }
            throw ex;
        });
        return cmd.execute(args);
    }
}
