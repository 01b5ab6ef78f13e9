package org.babaiquant.io;

import java.util.regex.Pattern;

import org.babaiquant.BadInputException;

/**
 * Which names may become part of a path. A site name (activation and Hessian sites, {@code --npy SITE=...},
 * {@code --site-map REGEX=SITE}, the pipeline's {@code import.sites} keys) is checked here before any folder is
 * named after it, so that no name can reach outside the output ({@code ../../victim}), hide a folder
 * ({@code .x}, {@code _x}: Spark skips them) or split into two path segments ({@code a/b}). Layer names are not
 * restricted: the quantize layout encodes every name into one safe folder name.
 */
public final class Names {
    /** A site: 1 to 128 of {@code A-Z a-z 0-9 . _ -}, starting with a letter or digit. */
    public static final Pattern SITE = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");

    private Names() {}

    /**
     * Returns {@code name} when it is a valid site name.
     *
     * @param where what gave the name, for the message ("--npy", "import.sites")
     * @throws BadInputException otherwise, naming it and the rule
     */
    public static String site(String name, String where) {
        if (name == null || !SITE.matcher(name).matches()) {
            throw new BadInputException(where + ": site name '" + name + "' is not allowed: a site name is 1 to 128 of"
                    + " A-Z a-z 0-9 . _ -, starting with a letter or digit (it names a folder of the output)");
        }
        return name;
    }
}
