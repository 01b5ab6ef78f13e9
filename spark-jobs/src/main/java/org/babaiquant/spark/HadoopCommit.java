package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.babaiquant.io.Commit;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link Commit} on a Hadoop {@link FileSystem}: {@code file:}, {@code hdfs:}, {@code s3a:} and the rest. On S3 a
 * folder rename is a copy of each object, which is why the protocol writes its marker last and readers trust a unit
 * only with its marker (or, for layouts without one, with the file that is written last).
 */
public final class HadoopCommit extends Commit<Path> {
    private final FileSystem fs;

    private HadoopCommit(FileSystem fs, Path target, IfExists ifExists, boolean folder, String marker) {
        super(target, ifExists, folder, marker);
        this.fs = fs;
    }

    /** Begins committing the folder {@code target}; {@code marker} (may be null) is written last. */
    public static HadoopCommit folder(Configuration conf, Path target, IfExists ifExists, String marker) {
        HadoopCommit c = new HadoopCommit(fileSystem(conf, target), qualify(conf, target), ifExists, true, marker);
        c.begin();
        return c;
    }

    /** Begins committing the single file {@code target}. */
    public static HadoopCommit file(Configuration conf, Path target, IfExists ifExists) {
        HadoopCommit c = new HadoopCommit(fileSystem(conf, target), qualify(conf, target), ifExists, false, null);
        c.begin();
        return c;
    }

    /** The file system of the target, for writing under {@link #temp()}. */
    public FileSystem fileSystem() {
        return fs;
    }

    private static FileSystem fileSystem(Configuration conf, Path p) {
        try {
            return p.getFileSystem(conf);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open the file system of " + Uris.redact(p.toString()) + ": " + e.getMessage(), e);
        }
    }

    private static Path qualify(Configuration conf, Path p) {
        return fileSystem(conf, p).makeQualified(p);
    }

    @Override
    protected Path parentOf(Path p) {
        return p.getParent();
    }

    @Override
    protected Path child(Path dir, String name) {
        return new Path(dir, name);
    }

    @Override
    protected String nameOf(Path p) {
        return p.getName();
    }

    @Override
    protected boolean exists(Path p) throws IOException {
        return fs.exists(p);
    }

    @Override
    protected boolean isDirectory(Path p) throws IOException {
        try {
            return fs.getFileStatus(p).isDirectory();
        } catch (FileNotFoundException e) {
            return false;
        }
    }

    @Override
    protected List<Path> list(Path dir) throws IOException {
        List<Path> out = new ArrayList<>();
        try {
            for (FileStatus st : fs.listStatus(dir)) {
                out.add(st.getPath());
            }
        } catch (FileNotFoundException e) {
            // absent: no children
        }
        return out;
    }

    @Override
    protected void mkdirs(Path dir) throws IOException {
        if (!fs.mkdirs(dir)) {
            throw new IOException("cannot create " + show(dir));
        }
    }

    /**
     * On {@code s3a:} the temporary gets no directory marker: a folder there is the prefix of its objects. Renaming a
     * temporary that had one (S3A copies each object, then deletes the sources and the marker) left an empty folder
     * behind in S3Proxy's file-backed stores, listed under the parent but gone for S3A's own {@code exists}: 275
     * listings of such ghosts in 150 commits on a loaded machine, 0 in 150 without the marker (2026-12-04).
     */
    @Override
    protected void createTempFolder(Path dir) throws IOException {
        if (!"s3a".equalsIgnoreCase(fs.getScheme())) {
            mkdirs(dir);
        }
    }

    @Override
    protected void deleteRecursively(Path p) throws IOException {
        fs.delete(p, true);
    }

    @Override
    protected void rename(Path from, Path to) throws IOException {
        if (!fs.rename(from, to)) {
            throw new IOException("rename " + show(from) + " → " + show(to) + " failed");
        }
    }

    @Override
    protected void touch(Path file) throws IOException {
        fs.create(file, false).close();
    }

    @Override
    protected String show(Path p) {
        return Uris.redact(p.toString());
    }
}
