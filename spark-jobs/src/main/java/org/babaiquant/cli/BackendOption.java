package org.babaiquant.cli;

import picocli.CommandLine.Option;

/** Mixin: where each layer's solver runs, declared once. */
public final class BackendOption {
    @Option(names = "--backend", defaultValue = "auto", paramLabel = "auto|cpu|cuda",
            description = "where each layer's solver runs; auto takes the task's GPU when the CUDA backend can run there,"
                    + " else the CPU (default: ${DEFAULT-VALUE})")
    String backend;
}
