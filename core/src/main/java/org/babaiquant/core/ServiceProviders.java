package org.babaiquant.core;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.ServiceConfigurationError;
import java.util.ServiceLoader;
import java.util.function.ToIntFunction;
import java.util.logging.Level;
import java.util.logging.Logger;

/** Loading of pluggable providers (dense kernels, quantization backends): the ones that load, highest priority first. */
final class ServiceProviders {
    private ServiceProviders() {}

    /**
     * Every provider of {@code type} on the class path that loads; one that fails to load is logged as a warning on
     * {@code log} and skipped, never fatal. Sorted by {@code priority}, highest first.
     */
    static <P> List<P> load(Class<P> type, ToIntFunction<P> priority, Logger log) {
        List<P> list = new ArrayList<>();
        try {
            for (P p : ServiceLoader.load(type)) {
                list.add(p);
            }
        } catch (ServiceConfigurationError | LinkageError e) {
            log.log(Level.WARNING, "a " + type.getName() + " failed to load; using the ones that did", e);
        }
        list.sort(Comparator.comparingInt(priority).reversed());
        return List.copyOf(list);
    }
}
