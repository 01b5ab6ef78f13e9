package org.babaiquant.cli;

import picocli.CommandLine.Option;

/** Mixin: where the heavy work runs (each layer's solver; each Hessian slice's XᵀX), declared once. */
public final class BackendOption {
    @Option(names = "--backend", defaultValue = "auto", paramLabel = "auto|cpu|cuda",
            description = "where the heavy work (solver, XᵀX) runs; auto takes the task's GPU when the CUDA backend can run there,"
                    + " else the CPU (default: ${DEFAULT-VALUE})")
    String backend;
}
