package org.babaiquant.io;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.regex.Pattern;

import org.babaiquant.BadInputException;

/**
 * The project's one commit protocol (Hadoop's {@code FileOutputCommitter} in miniature), for one <em>unit</em>: a
 * folder (a site, a layer, a command's {@code --out}) or a single file, on any storage ({@link LocalCommit} for
 * {@code java.nio} paths; {@code HadoopCommit} in spark-jobs for {@code file:}, {@code hdfs:}, {@code s3a:} ...).
 *
 * <pre>
 *   try (LocalCommit c = LocalCommit.folder(out, Commit.IfExists.REFUSE)) {
 *       write everything under c.temp();
 *       c.commit();
 *   }
 * </pre>
 * <ol>
 *   <li>{@code begin}: the target's parent must be a folder (or absent: it is created); a target that is a file
 *       where a folder is wanted (or the reverse) is bad input. Temporary siblings {@code _tmp-NAME-UUID} left by an
 *       earlier attempt at the same unit (a crash, kill -9) are deleted. With {@link IfExists#REFUSE} a non-empty
 *       target is bad input before any work is done.</li>
 *   <li>the caller writes under {@link #temp()} (a fresh folder, or the path of the file to create), a sibling of
 *       the target, so the rename below stays on one file system. On S3 the folder is not created ahead: it is the
 *       prefix of the files written under it.</li>
 *   <li>{@link #commit()}: an existing target is moved aside (to another {@code _tmp-NAME-UUID}), the temporary is
 *       renamed to the target, the marker (if any) is written <em>last</em> inside it (on S3 a folder rename is a
 *       copy of each object: without the marker an interrupted copy is incomplete, never complete-looking), and
 *       the old target is deleted. The whole folder is replaced: no stale file of an earlier run survives.</li>
 *   <li>{@link #close()} without {@link #commit()} (any failure) deletes the temporary.</li>
 * </ol>
 * Nothing is ever written or deleted outside the target's parent, and there only the target and names
 * {@code _tmp-NAME-UUID} of this unit. Names starting with {@code _} are hidden from Spark and Hadoop readers.
 *
 * @param <P> the storage's path type
 */
public abstract class Commit<P> implements AutoCloseable {

    /** What to do when the target already exists and is not empty. */
    public enum IfExists {
        /** Bad input ("choose another --out or pass --overwrite"), checked before any work and again at commit. */
        REFUSE,
        /** Replace the whole target: its old files are deleted. */
        REPLACE
    }

    /** The marker a committed folder gets last when asked for one. */
    public static final String SUCCESS = "_SUCCESS";

    private static final String UUID_RE = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

    private final P target;
    private final IfExists ifExists;
    private final boolean folder;
    private final String marker;
    private P parent;
    private P temp;
    private boolean committed;

    protected Commit(P target, IfExists ifExists, boolean folder, String marker) {
        this.target = target;
        this.ifExists = ifExists;
        this.folder = folder;
        this.marker = marker;
    }

    // ---------------------------------------------------------------------------------------- storage operations

    /** The parent, or null for a root. */
    protected abstract P parentOf(P p);

    protected abstract P child(P dir, String name);

    protected abstract String nameOf(P p);

    protected abstract boolean exists(P p) throws IOException;

    protected abstract boolean isDirectory(P p) throws IOException;

    /** The children of a folder (empty when absent). */
    protected abstract List<P> list(P dir) throws IOException;

    protected abstract void mkdirs(P dir) throws IOException;

    /** Deletes a file or a folder and everything under it; links are deleted, never followed. */
    protected abstract void deleteRecursively(P p) throws IOException;

    /** Renames {@code from} to {@code to}, which does not exist; failure is an IOException. */
    protected abstract void rename(P from, P to) throws IOException;

    /** Creates an empty file. */
    protected abstract void touch(P file) throws IOException;

    /**
     * Makes the temporary folder of a folder unit at {@link #begin()}. A store where a folder is only the common prefix
     * of its objects (S3) overrides this to create nothing: the folder appears with its first file, and
     * {@link #commit()} creates an empty one.
     */
    protected void createTempFolder(P dir) throws IOException {
        mkdirs(dir);
    }

    /** How to print a path in messages (no credentials). */
    protected String show(P p) {
        return String.valueOf(p);
    }

    // ---------------------------------------------------------------------------------------- the protocol

    /** The temporary name prefix of a unit: {@code _tmp-NAME-}. */
    public static String tempPrefix(String unitName) {
        return "_tmp-" + unitName + "-";
    }

    /** Whether {@code fileName} is a temporary of the unit {@code unitName} ({@code _tmp-NAME-UUID}). */
    public static boolean isTempOf(String fileName, String unitName) {
        return Pattern.matches(Pattern.quote(tempPrefix(unitName)) + UUID_RE, fileName);
    }

    /** Step 1 (the factories call it): checks the parent and the target, removes stale temporaries, makes the temp. */
    protected final void begin() {
        try {
            parent = parentOf(target);
            if (parent == null || nameOf(target).isEmpty()) {
                throw new BadInputException("cannot write to " + show(target) + ": give a folder below it");
            }
            checkAncestors(parent);
            mkdirs(parent);
            String name = nameOf(target);
            for (P p : list(parent)) {
                if (isTempOf(nameOf(p), name)) {
                    deleteRecursively(p);
                }
            }
            checkTarget();
            temp = child(parent, tempPrefix(name) + UUID.randomUUID());
            if (folder) {
                createTempFolder(temp);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot prepare " + show(target) + ": " + e.getMessage(), e);
        }
    }

    /** The first existing ancestor must be a folder: else a ParentNotDirectory trace would follow. */
    private void checkAncestors(P dir) throws IOException {
        for (P p = dir; p != null; p = parentOf(p)) {
            if (exists(p)) {
                if (!isDirectory(p)) {
                    throw new BadInputException(show(p) + " is a file, not a folder: cannot write " + show(target)
                            + " under it");
                }
                return;
            }
        }
    }

    private void checkTarget() throws IOException {
        if (!exists(target)) {
            return;
        }
        if (folder != isDirectory(target)) {
            throw new BadInputException(show(target) + " exists and is " + (folder ? "a file, not a folder" : "a folder, not a file")
                    + ": choose another output");
        }
        if (ifExists == IfExists.REFUSE && (!folder || !list(target).isEmpty())) {
            throw new BadInputException(show(target) + " already exists: choose another --out or pass --overwrite");
        }
    }

    /** Where to write: a fresh empty folder (folder units) or the path of the file to create (file units). */
    public P temp() {
        return temp;
    }

    /** The final path. */
    public P target() {
        return target;
    }

    /** Moves the temporary into place (replacing the whole old target), then writes the marker. */
    public void commit() {
        if (committed) {
            throw new IllegalStateException("already committed: " + show(target));
        }
        try {
            checkTarget();
            P aside = null;
            if (exists(target)) {
                aside = child(parent, tempPrefix(nameOf(target)) + UUID.randomUUID());
                rename(target, aside);
            }
            try {
                if (folder && !exists(temp)) {
                    mkdirs(target); // an empty unit on a store where a folder is only its objects' prefix: nothing to move
                } else {
                    rename(temp, target);
                }
            } catch (IOException e) {
                if (aside != null && !exists(target)) {
                    rename(aside, target); // put the old one back: a failed commit changes nothing
                }
                throw e;
            }
            committed = true;
            if (folder && marker != null) {
                touch(child(target, marker));
            }
            if (aside != null) {
                deleteRecursively(aside);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot commit " + show(target) + ": " + e.getMessage(), e);
        }
    }

    /** Whether {@link #commit()} succeeded. */
    public boolean committed() {
        return committed;
    }

    /** Deletes the temporary unless committed (never throws over an earlier failure: best effort, logged to stderr). */
    @Override
    public void close() {
        if (committed || temp == null) {
            return;
        }
        try {
            if (exists(temp)) {
                deleteRecursively(temp);
            }
        } catch (IOException | RuntimeException e) {
            // the next begin() of this unit deletes it
            System.err.println("warning: could not remove " + show(temp) + ": " + e.getMessage());
        }
    }

    /** The temporaries of {@code unitName} under {@code dir} (for tests and cleanup reports). */
    public final List<P> temporaries(P dir, String unitName) throws IOException {
        List<P> out = new ArrayList<>();
        for (P p : list(dir)) {
            if (isTempOf(nameOf(p), unitName)) {
                out.add(p);
            }
        }
        return out;
    }
}
