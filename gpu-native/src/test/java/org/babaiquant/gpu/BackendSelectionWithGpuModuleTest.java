package org.babaiquant.gpu;

import org.babaiquant.core.QuantBackend;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Selection with the CUDA provider on the class path. Both branches are asserted: where the probe says unavailable
 * (this build machine: no GPU) auto falls back to the CPU and cuda is a clear error carrying the probe's reason;
 * where it says available (a GPU host) auto picks CUDA.
 */
class BackendSelectionWithGpuModuleTest {
    @Test
    void autoAndCudaFollowTheProbe() {
        QuantBackend.Availability a = CudaProbe.availability();
        assertFalse(a.reason().isBlank());
        assertSame(a, CudaProbe.availability(), "probed once");
        if (a.available()) {
            assertEquals("cuda", QuantBackend.select("auto").name());
            assertEquals("cuda", QuantBackend.select("cuda", "0").name());
        } else {
            assertSame(QuantBackend.cpu(), QuantBackend.select("auto"));
            QuantBackend.UnavailableException e = assertThrows(QuantBackend.UnavailableException.class,
                    () -> QuantBackend.select("cuda"));
            assertTrue(e.getMessage().startsWith("backend cuda is unavailable: "), e.getMessage());
            assertTrue(e.getMessage().contains(a.reason()), e.getMessage());
            assertThrows(QuantBackend.UnavailableException.class, () -> CudaBackend.open(null));
        }
        assertSame(QuantBackend.cpu(), QuantBackend.select("cpu"));
    }

    @Test
    void withoutAGpuTheReasonNamesTheDriver() {
        QuantBackend.Availability a = CudaProbe.availability();
        if (!a.available() && KernelImage.load().built()) {
            // kernels are in the jar, so what is missing must be the driver or the device
            assertTrue(a.reason().contains("CUDA driver") || a.reason().contains("cuInit")
                    || a.reason().contains("no CUDA device"), a.reason());
        }
    }

    @Test
    void gpuCheckWithoutCudaSaysWhyAndExitsWithItsOwnCode(@org.junit.jupiter.api.io.TempDir Path tmp) {
        QuantBackend.Availability a = CudaProbe.availability();
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        int code = GpuCheck.run(new String[] {"--out", tmp.toString(), "--skip-bench", "--data",
                BackendParityContract.data().toString()}, new PrintStream(buf, true, StandardCharsets.UTF_8));
        String printed = buf.toString(StandardCharsets.UTF_8);
        if (a.available()) {
            assertEquals(GpuCheck.EXIT_OK, code, printed);
        } else {
            assertEquals(GpuCheck.EXIT_UNAVAILABLE, code, printed);
            assertEquals("CUDA unavailable: " + a.reason(), printed.strip());
        }
        assertEquals(GpuCheck.EXIT_USAGE, GpuCheck.run(new String[] {"--bogus"}, new PrintStream(
                new ByteArrayOutputStream(), true, StandardCharsets.UTF_8)));
    }
}
