package org.babaiquant.io;

import java.io.IOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import org.babaiquant.BadInputException;

/** {@link Commit} on the local file system ({@code java.nio}): the CLI's local outputs and single-file writers. */
public final class LocalCommit extends Commit<Path> {

    private LocalCommit(Path target, IfExists ifExists, boolean folder, String marker) {
        super(absolute(target), ifExists, folder, marker);
    }

    /** An empty path would mean the working directory: never an output. */
    private static Path absolute(Path target) {
        if (target == null || target.toString().isBlank()) {
            throw new BadInputException("the output path is empty: give a folder or file name");
        }
        return target.toAbsolutePath().normalize();
    }

    /** Begins committing the folder {@code target} (no marker). */
    public static LocalCommit folder(Path target, IfExists ifExists) {
        return folder(target, ifExists, null);
    }

    /** Begins committing the folder {@code target}; {@code marker} (e.g. {@link #SUCCESS}) is written last. */
    public static LocalCommit folder(Path target, IfExists ifExists, String marker) {
        LocalCommit c = new LocalCommit(target, ifExists, true, marker);
        c.begin();
        return c;
    }

    /** Begins committing the single file {@code target}: write {@link #temp()}, then {@link #commit()}. */
    public static LocalCommit file(Path target, IfExists ifExists) {
        LocalCommit c = new LocalCommit(target, ifExists, false, null);
        c.begin();
        return c;
    }

    @Override
    protected Path parentOf(Path p) {
        return p.getParent();
    }

    @Override
    protected Path child(Path dir, String name) {
        return dir.resolve(name);
    }

    @Override
    protected String nameOf(Path p) {
        Path n = p.getFileName();
        return n == null ? "" : n.toString();
    }

    @Override
    protected boolean exists(Path p) {
        return Files.exists(p, LinkOption.NOFOLLOW_LINKS);
    }

    @Override
    protected boolean isDirectory(Path p) {
        return Files.isDirectory(p);
    }

    @Override
    protected List<Path> list(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(dir)) {
            return new ArrayList<>(s.toList());
        }
    }

    @Override
    protected void mkdirs(Path dir) throws IOException {
        Files.createDirectories(dir);
    }

    @Override
    protected void deleteRecursively(Path p) throws IOException {
        if (!exists(p)) {
            return;
        }
        // walkFileTree does not follow links: a link is deleted, never what it points to
        Files.walkFileTree(p, new SimpleFileVisitor<>() {
            @Override
            public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                Files.deleteIfExists(file);
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult postVisitDirectory(Path dir, IOException e) throws IOException {
                if (e != null && !(e instanceof NoSuchFileException)) {
                    throw e;
                }
                Files.deleteIfExists(dir);
                return FileVisitResult.CONTINUE;
            }
        });
    }

    @Override
    protected void rename(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(from, to);
        }
    }

    @Override
    protected void touch(Path file) throws IOException {
        Files.createFile(file);
    }
}
