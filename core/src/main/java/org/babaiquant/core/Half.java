package org.babaiquant.core;

/**
 * The project's one 16-bit float codec: IEEE 754 binary16 ("fp16", what checkpoints store scales in) and bfloat16,
 * bit-exact, for Java 17 (which lacks {@code Float.floatToFloat16}). A 16-bit float is carried as its bits in a
 * {@code short}. Every reader and writer of F16/BF16 data (safetensors, npy, Parquet layouts, SSQR, the backends)
 * goes through here.
 *
 * <p>Why bit-exact matters here: SSQR runs GPTQ on the fp16-rounded scales, so that the lattice GPTQ searched is the
 * lattice the file stores; every half is exactly a float, so {@code toFloat(fromFloat(x))} is the value the decoder
 * multiplies by.
 */
public final class Half {
    private Half() {}

    /** Largest finite half, 65504. */
    public static final float MAX_VALUE = 65504f;

    /** The float (exact) that half bits {@code h} denote. */
    public static float toFloat(short h) {
        int bits = h & 0xFFFF;
        int sign = (bits & 0x8000) << 16;
        int exp = (bits >>> 10) & 0x1F;
        int mant = bits & 0x3FF;
        if (exp == 0x1F) { // Inf / NaN: keep the payload in the top mantissa bits
            return Float.intBitsToFloat(sign | 0x7F800000 | (mant << 13));
        }
        if (exp == 0) {
            // zero or subnormal: mant · 2^-24, exact in float
            float v = mant * 0x1p-24f;
            return sign == 0 ? v : -v;
        }
        return Float.intBitsToFloat(sign | ((exp - 15 + 127) << 23) | (mant << 13));
    }

    /** The half nearest to {@code f} (ties to even), overflowing to ±Inf as IEEE does. */
    public static short fromFloat(float f) {
        int x = Float.floatToRawIntBits(f);
        int sign = (x >>> 16) & 0x8000;
        int exp = (x >>> 23) & 0xFF;
        int mant = x & 0x7FFFFF;
        if (exp == 0xFF) { // Inf / NaN (NaN keeps a quiet bit so it stays NaN)
            return (short) (sign | 0x7C00 | (mant != 0 ? 0x200 | (mant >>> 13) : 0));
        }
        int e = exp - 127 + 15; // re-biased exponent
        if (e >= 0x1F) {
            return (short) (sign | 0x7C00);
        }
        if (e <= 0) {
            // subnormal half (or zero): value = m · 2^-24 with m = round(|f| · 2^24); shift the full significand
            if (e < -10) {
                return (short) sign; // below half the smallest subnormal: rounds to ±0
            }
            int sig = mant | 0x800000; // 24-bit significand, value sig · 2^(exp-150)
            int shift = 14 - e;        // = 126 - exp - 24 + ... : brings sig to units of 2^-24
            return (short) (sign | roundShift(sig, shift));
        }
        // normal: 10 of 23 mantissa bits survive; a carry out of the mantissa bumps the exponent, which is right
        int r = roundShift(mant, 13);
        return (short) (sign | ((e << 10) + r));
    }

    /** {@code v >> shift} rounded to nearest, ties to even ({@code 1 ≤ shift ≤ 31}). */
    private static int roundShift(int v, int shift) {
        int q = v >>> shift;
        int rem = v & ((1 << shift) - 1);
        int half = 1 << (shift - 1);
        if (rem > half || (rem == half && (q & 1) == 1)) {
            q++;
        }
        return q;
    }

    /** {@code toFloat(fromFloat(f))}: f rounded to the nearest half. */
    public static float round(float f) {
        return toFloat(fromFloat(f));
    }

    /** bfloat16 bits to float: bfloat16 is the upper half of a float32, so this is exact. */
    public static float bf16ToFloat(short bf16) {
        return Float.intBitsToFloat((bf16 & 0xffff) << 16);
    }

    /** The bfloat16 nearest to {@code f} (ties to even); NaN stays NaN (quiet). */
    public static short bf16FromFloat(float f) {
        int bits = Float.floatToRawIntBits(f);
        if ((bits & 0x7fffffff) > 0x7f800000) {
            return (short) ((bits >>> 16) | 0x40);
        }
        // Adding 0x7fff rounds up anything above the halfway point; the low bit of the kept half breaks ties to even.
        return (short) ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16);
    }
}
