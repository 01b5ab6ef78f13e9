package org.babaiquant.cli;

import picocli.CommandLine.Option;

/** Mixin: the Spark master of a command that runs Spark jobs, declared once. */
public final class SparkMasterOption {
    @Option(names = "--master", paramLabel = "URL", description = "Spark master when not under spark-submit (default: local[*])")
    String master;
}
