package org.babaiquant.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.LinkedHashMap;

import org.babaiquant.BadInputException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TensorSourceTest {

    @TempDir
    Path dir;

    @Test
    void parsesSpecs() {
        TensorSource.Spec npy = TensorSource.parse("weights/w.npy");
        assertEquals(Path.of("weights/w.npy"), npy.file());
        assertNull(npy.tensor());

        TensorSource.Spec st = TensorSource.parse("ckpt/model.safetensors:model.layers.0.self_attn.q_proj.weight");
        assertEquals(Path.of("ckpt/model.safetensors"), st.file());
        assertEquals("model.layers.0.self_attn.q_proj.weight", st.tensor());

        // Colons before the file name and inside the tensor name survive.
        TensorSource.Spec colons = TensorSource.parse("C:/m/x.safetensors:a:b");
        assertEquals(Path.of("C:/m/x.safetensors"), colons.file());
        assertEquals("a:b", colons.tensor());
    }

    @Test
    void readsNpy() {
        Path f = dir.resolve("w.npy");
        NpyWriter.writeF64(f, new double[][]{{1, 2}, {3, 4}});
        assertArrayEquals(new double[]{3, 4}, TensorSource.readMatrix(f.toString())[1], 0);
    }

    @Test
    void readsSafetensorsTensor() {
        LinkedHashMap<String, double[][]> t = new LinkedHashMap<>();
        t.put("a", new double[][]{{1}});
        t.put("b.weight", new double[][]{{5, 6, 7}});
        Path f = dir.resolve("m.safetensors");
        SafeTensorsWriter.write(f, t, "F32");
        assertArrayEquals(new double[]{5, 6, 7}, TensorSource.readMatrix(f + ":b.weight")[0], 0);
    }

    @Test
    void missingFileNamesIt() {
        String spec = dir.resolve("gone.safetensors") + ":w";
        BadInputException e = assertThrows(BadInputException.class, () -> TensorSource.readMatrix(spec));
        assertTrue(e.getMessage().contains("gone.safetensors") && e.getMessage().contains("no such file"),
                e.getMessage());
        BadInputException n = assertThrows(BadInputException.class,
                () -> TensorSource.readMatrix(dir.resolve("gone.npy").toString()));
        assertTrue(n.getMessage().contains("gone.npy"), n.getMessage());
    }

    @Test
    void unsupportedExtensionListsSupportedOnes() {
        BadInputException e = assertThrows(BadInputException.class, () -> TensorSource.readMatrix("w.pt"));
        assertTrue(e.getMessage().contains("w.pt") && e.getMessage().contains(".npy")
                && e.getMessage().contains(".safetensors:"), e.getMessage());
    }

    @Test
    void safetensorsWithoutTensorName() {
        BadInputException e = assertThrows(BadInputException.class, () -> TensorSource.readMatrix("m.safetensors"));
        assertTrue(e.getMessage().contains("m.safetensors:TENSOR_NAME"), e.getMessage());
        assertThrows(BadInputException.class, () -> TensorSource.readMatrix("m.safetensors:"));
        assertThrows(BadInputException.class, () -> TensorSource.readMatrix(" "));
    }
}
