package org.babaiquant;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.junit.jupiter.api.Test;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.classes;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The layering of docs/ARCHITECTURE.md as a test, over the main classes of every module:
 * <pre>
 *   core (algorithms, JDK + jackson-core only)  ←  io, nonclip, method, serving (core module)
 *        ←  gpu (gpu-native)   ←  blas, spark, onnx, cli (spark-jobs: never gpu)
 * </pre>
 */
class ArchitectureTest {
    private static final JavaClasses MAIN = new ClassFileImporter()
            .withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
            .withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_JARS)
            .importPackages("org.babaiquant");

    @Test
    void importsEveryModule() {
        for (String c : new String[] {"org.babaiquant.core.GptqSolver", "org.babaiquant.io.SafeTensors",
                "org.babaiquant.gpu.CudaBackend", "org.babaiquant.spark.HessianJob", "org.babaiquant.cli.Main"}) {
            assertTrue(MAIN.contain(c), "the rules must see " + c);
        }
    }

    /** No two packages of ours depend on each other, directly or through others. */
    @Test
    void noPackageCycles() {
        slices().matching("org.babaiquant.(*)..").should().beFreeOfCycles().check(MAIN);
    }

    /** The algorithms depend on the JDK, jackson-core and the one shared exception (BadInputException) only. */
    @Test
    void coreDependsOnNothingOfOurs() {
        classes().that().resideInAPackage("org.babaiquant.core..")
                .should().onlyDependOnClassesThat()
                .resideInAnyPackage("org.babaiquant.core..", "org.babaiquant", "java..", "jdk..",
                        "com.fasterxml.jackson.core..")
                .check(MAIN);
    }

    /** Backends arrive through ServiceLoader: the Spark jobs and the CLI never name a backend implementation. */
    @Test
    void sparkJobsNeverImportGpuNative() {
        noClasses().that().resideInAnyPackage("org.babaiquant.spark..", "org.babaiquant.cli..", "org.babaiquant.onnx..",
                        "org.babaiquant.blas..")
                .should().dependOnClassesThat().resideInAPackage("org.babaiquant.gpu..")
                .check(MAIN);
    }
}
