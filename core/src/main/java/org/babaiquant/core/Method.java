package org.babaiquant.core;

/** Quantization methods of the lattice core. */
public enum Method {
    /** GPTQ: blocked column sweep with error feedback through U (Hinv). */
    GPTQ("gptq"),
    /** Babai's nearest-plane algorithm stated directly on the lattice basis (R of the damped basis). */
    BABAI("babai"),
    /** Round to nearest on the same grid (no error feedback). */
    RTN("rtn");

    public final String cliName;

    Method(String cliName) {
        this.cliName = cliName;
    }

    public static Method parse(String s) {
        for (Method m : values()) {
            if (m.cliName.equalsIgnoreCase(s)) {
                return m;
            }
        }
        throw new IllegalArgumentException("unknown method '" + s + "': expected gptq, babai or rtn");
    }

    @Override
    public String toString() {
        return cliName;
    }
}
