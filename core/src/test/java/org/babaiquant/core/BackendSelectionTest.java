package org.babaiquant.core;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Selection in core alone: no provider is on core's test class path, so auto means CPU and cuda is refused. */
class BackendSelectionTest {
    @Test
    void cpuAndAutoGiveTheCpuBackend() {
        assertSame(QuantBackend.cpu(), QuantBackend.select("cpu"));
        assertSame(QuantBackend.cpu(), QuantBackend.select("auto"));
        assertSame(QuantBackend.cpu(), QuantBackend.select(null));
        assertEquals("cpu", QuantBackend.select("auto", "0").name());
    }

    @Test
    void cudaWithoutTheGpuModuleIsAClearError() {
        QuantBackend.UnavailableException e = assertThrows(QuantBackend.UnavailableException.class,
                () -> QuantBackend.select("cuda"));
        assertTrue(e.getMessage().contains("no CUDA backend on the class path"), e.getMessage());
    }

    @Test
    void unknownNameIsRefused() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> QuantBackend.select("tpu"));
        assertTrue(e.getMessage().contains("auto, cpu or cuda"), e.getMessage());
    }
}
