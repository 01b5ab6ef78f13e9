package org.babaiquant.gpu;

import jcuda.driver.CUresult;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The error mapping and device addressing, which need no GPU. */
class CudaErrorsTest {
    @Test
    void outOfMemoryIsRecoverableEverythingElseFatal() {
        CudaException oom = CudaException.of(CUresult.CUDA_ERROR_OUT_OF_MEMORY, "cuMemAlloc(8 bytes)");
        assertInstanceOf(CudaException.Recoverable.class, oom);
        assertTrue(oom.recoverable());
        assertTrue(oom.getMessage().contains("CUDA_ERROR_OUT_OF_MEMORY"), oom.getMessage());
        for (int code : new int[] {CUresult.CUDA_ERROR_ILLEGAL_ADDRESS, CUresult.CUDA_ERROR_LAUNCH_FAILED,
                CUresult.CUDA_ERROR_INVALID_VALUE, CUresult.CUDA_ERROR_NO_BINARY_FOR_GPU}) {
            CudaException e = CudaException.of(code, "launch");
            assertInstanceOf(CudaException.Fatal.class, e);
            assertFalse(e.recoverable());
            assertEquals(code, e.code);
        }
        CudaException.check(CUresult.CUDA_SUCCESS, "nothing");
        assertThrows(CudaException.Fatal.class, () -> CudaException.check(CUresult.CUDA_ERROR_UNKNOWN, "x"));
    }

    @Test
    void sparkGpuAddressesAreOrdinals() {
        assertEquals(0, CudaDevice.parseOrdinal("0"));
        assertEquals(3, CudaDevice.parseOrdinal(" 3 "));
        assertEquals(Integer.getInteger(CudaDevice.DEVICE_PROPERTY, 0), CudaDevice.parseOrdinal(null));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CudaDevice.parseOrdinal("GPU-5f3a"));
        assertTrue(e.getMessage().contains("GPU-5f3a"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> CudaDevice.parseOrdinal("-1"));
    }
}
