package org.babaiquant.method;

/** A method whose layers are stored in its own binary format, which it can decode (shards keep it as the payload). */
public interface EncodedMethod extends QuantMethod {
    /** The stored layer's weights, row-major [rows · cols], decoded from its bytes. */
    float[] decode(byte[] bytes);
}
