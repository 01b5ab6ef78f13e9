package org.babaiquant.io;

import org.babaiquant.BadInputException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.UUID;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** The commit protocol on a real local file system (issue-13 defects 6, 7, 10, 11 at the level every writer shares). */
class LocalCommitTest {
    @TempDir
    Path dir;

    private static List<String> names(Path d) throws IOException {
        try (Stream<Path> s = Files.list(d)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void folderIsCompleteOrAbsentAndMarkedLast() throws IOException {
        Path out = dir.resolve("out");
        try (LocalCommit c = LocalCommit.folder(out, Commit.IfExists.REFUSE, Commit.SUCCESS)) {
            assertTrue(Files.isDirectory(c.temp()));
            assertTrue(c.temp().getFileName().toString().startsWith("_tmp-out-"));
            Files.writeString(c.temp().resolve("a.txt"), "a");
            assertFalse(Files.exists(out), "nothing under the final name before the commit");
            c.commit();
        }
        assertEquals(List.of("_SUCCESS", "a.txt"), names(out));
        assertEquals(List.of("out"), names(dir), "no temporary left");
    }

    /** Defect 7: a reused --out keeps no file of the earlier run. */
    @Test
    void replaceDropsStaleFiles() throws IOException {
        Path out = dir.resolve("out");
        Files.createDirectories(out);
        Files.writeString(out.resolve("scales.npy"), "old 2-bit scales");
        try (LocalCommit c = LocalCommit.folder(out, Commit.IfExists.REPLACE)) {
            Files.writeString(c.temp().resolve("layer.hptq"), "new");
            c.commit();
        }
        assertEquals(List.of("layer.hptq"), names(out));
        assertEquals(List.of("out"), names(dir));
    }

    /** Defect 7, the other choice: without --overwrite a non-empty folder is refused before any work. */
    @Test
    void refuseNonEmptyButAcceptEmpty() throws IOException {
        Path out = dir.resolve("out");
        Files.createDirectories(out);
        try (LocalCommit c = LocalCommit.folder(out, Commit.IfExists.REFUSE)) {
            Files.writeString(c.temp().resolve("x"), "x");
            c.commit();
        }
        BadInputException e = assertThrows(BadInputException.class, () -> LocalCommit.folder(out, Commit.IfExists.REFUSE));
        assertTrue(e.getMessage().contains("--overwrite") && e.getMessage().contains(out.toString()), e.getMessage());
        assertEquals(List.of("out"), names(dir));
    }

    /** Defect 6: a failure while writing leaves neither the target nor a temporary. */
    @Test
    void failureRemovesTheTemporary() throws IOException {
        Path out = dir.resolve("out");
        assertThrows(IllegalStateException.class, () -> {
            try (LocalCommit c = LocalCommit.folder(out, Commit.IfExists.REFUSE)) {
                Files.writeString(c.temp().resolve("report.json"), "{}");
                throw new IllegalStateException("disk full");
            }
        });
        assertEquals(List.of(), names(dir));
    }

    /** Defect 11: what a killed run left is removed by the next run of the same unit, and only of that unit. */
    @Test
    void staleTemporariesOfTheUnitAreCleaned() throws IOException {
        Path stale = Files.createDirectories(dir.resolve("_tmp-site=a-" + UUID.randomUUID()).resolve("part"));
        Path other = Files.createDirectories(dir.resolve("_tmp-site=a-b-" + UUID.randomUUID()));
        Path notOurs = Files.createDirectories(dir.resolve("_tmp-site=a-keep"));
        try (LocalCommit c = LocalCommit.folder(dir.resolve("site=a"), Commit.IfExists.REPLACE)) {
            c.commit();
        }
        assertFalse(Files.exists(stale.getParent()));
        assertTrue(Files.exists(other), "another unit's temporary (site a-b) is not touched");
        assertTrue(Files.exists(notOurs), "a name that is not UUID-suffixed is not a temporary");
    }

    /** Defect 10: an output under a file, an output that is a file, the root and an empty path are bad input. */
    @Test
    void badTargetsAreBadInput() throws IOException {
        Path file = Files.writeString(dir.resolve("f"), "x");
        assertThrows(BadInputException.class, () -> LocalCommit.folder(file.resolve("sub"), Commit.IfExists.REPLACE));
        assertThrows(BadInputException.class, () -> LocalCommit.folder(file, Commit.IfExists.REPLACE));
        assertThrows(BadInputException.class, () -> LocalCommit.folder(dir.getRoot(), Commit.IfExists.REPLACE));
        assertThrows(BadInputException.class, () -> LocalCommit.folder(Path.of(""), Commit.IfExists.REPLACE));
        assertEquals(List.of("f"), names(dir), "nothing written beside the file");
        assertEquals("x", Files.readString(file));
    }

    /** Replacing a target that is a link deletes the link, never what it points to. */
    @Test
    void replacingALinkKeepsWhatItPointsTo() throws IOException {
        Path victim = Files.createDirectories(dir.resolve("victim"));
        Files.writeString(victim.resolve("keep"), "k");
        Path outDir = Files.createDirectories(dir.resolve("o"));
        Path link = Files.createSymbolicLink(outDir.resolve("out"), victim);
        try (LocalCommit c = LocalCommit.folder(link, Commit.IfExists.REPLACE)) {
            Files.writeString(c.temp().resolve("new"), "n");
            c.commit();
        }
        assertEquals("k", Files.readString(victim.resolve("keep")));
        assertFalse(Files.isSymbolicLink(outDir.resolve("out")));
        assertEquals(List.of("new"), names(outDir.resolve("out")));
    }

    @Test
    void fileUnitReplacesAndCleans() throws IOException {
        Path f = dir.resolve("w.npy");
        Files.writeString(f, "old");
        Files.writeString(dir.resolve("_tmp-w.npy-" + UUID.randomUUID()), "killed writer's leftover");
        try (LocalCommit c = LocalCommit.file(f, Commit.IfExists.REPLACE)) {
            Files.writeString(c.temp(), "new");
            c.commit();
        }
        assertEquals("new", Files.readString(f));
        assertEquals(List.of("w.npy"), names(dir));
    }

    /**
     * Defect 6 on a really full file system: a 1 MiB tmpfs, 2 MiB written. Needs root and mount rights (a CI
     * container may have neither): skipped otherwise.
     */
    @Test
    void fullFileSystemLeavesNothing() throws Exception {
        assumeTrue("root".equals(System.getProperty("user.name")), "needs root to mount a tmpfs");
        Path mnt = Files.createDirectories(dir.resolve("tiny"));
        Process mount = new ProcessBuilder("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt.toString())
                .redirectErrorStream(true).start();
        assumeTrue(mount.waitFor() == 0, "mount not permitted here");
        try {
            Path out = mnt.resolve("q");
            assertThrows(UncheckedIOException.class, () -> {
                try (LocalCommit c = LocalCommit.folder(out, Commit.IfExists.REPLACE)) {
                    try {
                        Files.write(c.temp().resolve("big"), new byte[2 << 20]);
                    } catch (IOException e) {
                        throw new UncheckedIOException(e);
                    }
                    c.commit();
                }
            });
            assertEquals(List.of(), names(mnt), "no partial folder on the full file system");
        } finally {
            new ProcessBuilder("umount", mnt.toString()).start().waitFor();
        }
    }
}
