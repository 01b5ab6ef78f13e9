package org.babaiquant.cli;

import org.babaiquant.BadInputException;
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

    /** Runs the CLI in-process and returns the exit status: 0 ok, 1 internal error, 2 bad input or usage. */
    public static int run(String... args) {
        CommandLine cmd = new CommandLine(new Main());
        cmd.setExecutionExceptionHandler((ex, cl, parsed) -> {
            // Spark wraps failures of tasks: the user's mistake is somewhere down the cause chain
            BadInputException bad = org.babaiquant.spark.SparkSupport.badInput(ex);
            if (bad != null || ex instanceof IllegalArgumentException || ex instanceof UncheckedIOException) {
                cl.getErr().println("babai-quant " + cl.getCommandName() + ": error: "
                        + (bad != null ? bad.getMessage() : ex.getMessage()));
                return 2;
            }
            throw ex;
        });
        return cmd.execute(args);
    }
}
