package org.babaiquant.core;

import java.util.List;
import java.util.logging.Level;
import java.util.logging.Logger;

/** Loads the {@link DenseKernels.Provider}s and picks one, once per JVM (a holder class: lazy and thread-safe). */
final class KernelSelection {
    private static final Logger LOG = Logger.getLogger(DenseKernels.class.getName());
    static final DenseKernels CHOSEN = choose();

    private KernelSelection() {}

    /** The providers that load without error, highest priority first. */
    static List<DenseKernels.Provider> providers() {
        return ServiceProviders.load(DenseKernels.Provider.class, DenseKernels.Provider::priority, LOG);
    }

    /** The provider's kernels, or null when it is unavailable or fails: a provider never stops the algorithms. */
    static DenseKernels kernelsIfAvailable(DenseKernels.Provider p) {
        try {
            return p.available() ? p.kernels() : null;
        } catch (RuntimeException | LinkageError e) {
            LOG.log(Level.WARNING, "dense kernels: provider " + p.name() + " failed; ignoring it", e);
            return null;
        }
    }

    private static DenseKernels choose() {
        String wanted = System.getProperty(DenseKernels.PROPERTY, "").trim();
        DenseKernels chosen = null;
        boolean wantedFound = wanted.isEmpty();
        StringBuilder considered = new StringBuilder();
        for (DenseKernels.Provider p : providers()) {
            DenseKernels k = kernelsIfAvailable(p);
            considered.append("; ").append(p.name()).append(" (priority ").append(p.priority()).append("): ")
                    .append(k != null ? "available" : "unavailable").append(", ").append(describe(p));
            boolean isWanted = p.name().equals(wanted);
            wantedFound |= isWanted && k != null;
            if (k != null && (chosen == null || isWanted) && !Dense.INSTANCE.name().equals(wanted)) {
                chosen = k;
            }
        }
        if (chosen == null || Dense.INSTANCE.name().equals(wanted)) {
            chosen = Dense.INSTANCE;
            wantedFound = true;
        }
        if (!wantedFound) {
            LOG.warning("dense kernels: -D" + DenseKernels.PROPERTY + "=" + wanted + " is not available here");
        }
        LOG.info("dense kernels: using " + chosen.description() + considered);
        return chosen;
    }

    private static String describe(DenseKernels.Provider p) {
        try {
            return p.describe();
        } catch (RuntimeException | LinkageError e) {
            return e.toString();
        }
    }
}
