package org.babaiquant;

import org.babaiquant.cli.Main;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * conf/airflow/babai_quant_dag.py without Airflow: python3 parses it with {@code ast}, then runs it against stub
 * {@code airflow} modules that record the DAG and its tasks, renders the Jinja templates with the DAG's default params,
 * and prints every task's spark-submit command. Each must name a main class on our classpath and arguments that the
 * CLI's own parser accepts, and the pipeline's --dry-run must accept the rendered config overrides.
 */
class AirflowDagTest {
    private static final String HARNESS = """
            import ast, sys, types, shlex, re
            src = open(sys.argv[1]).read()
            ast.parse(src)
            tasks, dags = [], []
            class DAG:
                def __init__(self, dag_id, **kw): self.dag_id = dag_id; self.kw = kw; dags.append(self)
                def __enter__(self): return self
                def __exit__(self, *a): return False
            class BashOperator:
                def __init__(self, task_id, bash_command, **kw): self.task_id = task_id; self.cmd = bash_command; self.up = []; tasks.append(self)
                def __rshift__(self, other): other.up.append(self.task_id); return other
            airflow = types.ModuleType('airflow'); airflow.DAG = DAG
            ops = types.ModuleType('airflow.operators'); bash = types.ModuleType('airflow.operators.bash'); bash.BashOperator = BashOperator
            sys.modules.update({'airflow': airflow, 'airflow.operators': ops, 'airflow.operators.bash': bash})
            exec(compile(src, sys.argv[1], 'exec'), {'__name__': 'dag'})
            d = dags[0]
            params = d.kw['params']
            print('DAG', d.dag_id, d.kw.get('schedule'), d.kw['default_args'].get('retries'))
            for t in tasks:
                cmd = re.sub(r'\\{\\{\\s*params\\.(\\w+)\\s*\\}\\}', lambda m: str(params[m.group(1)]), t.cmd)
                cmd = re.sub(r'\\{\\{\\s*ds_nodash\\s*\\}\\}', '20260105', cmd)
                assert '{{' not in cmd, cmd
                print('TASK', t.task_id, ','.join(t.up), '\\x1f'.join(shlex.split(cmd)))
            """;

    @Test
    void everySparkSubmitOfTheDagNamesOurMainClassAndArgumentsTheCliAccepts(@TempDir Path tmp) throws Exception {
        Path dag = RealData.repoRoot().resolve("conf/airflow/babai_quant_dag.py");
        Path harness = tmp.resolve("harness.py");
        Files.writeString(harness, HARNESS);
        Process p;
        try {
            p = new ProcessBuilder("python3", harness.toString(), dag.toString()).redirectErrorStream(true).start();
        } catch (IOException noPython) {
            Assumptions.abort("python3 is not installed: " + noPython.getMessage());
            return;
        }
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.exitValue(), out);
        String[] lines = out.strip().split("\n");
        assertTrue(lines[0].startsWith("DAG babai_quant @weekly 3"), "scheduled, with retries: " + lines[0]);
        List<String> stages = new ArrayList<>();
        String previous = "";
        for (String line : Arrays.copyOfRange(lines, 1, lines.length)) {
            String[] f = line.split(" ", 4);
            assertEquals("TASK", f[0], line);
            stages.add(f[1]);
            assertEquals(previous, f[2], "tasks run in stage order: " + line);
            previous = f[1];
            List<String> argv = List.of(f[3].split("\u001f"));
            assertTrue(argv.get(0).endsWith("spark-submit"), line);
            String mainClass = argv.get(argv.indexOf("--class") + 1);
            assertEquals(Main.class, Class.forName(mainClass), "the main class exists on the classpath");
            int jar = -1;
            for (int i = 1; i < argv.size(); i++) {
                if (argv.get(i).endsWith(".jar") && !argv.get(i - 1).startsWith("--")) {
                    jar = i;
                    break;
                }
            }
            assertTrue(jar > 0, "an application jar: " + argv);
            String[] appArgs = argv.subList(jar + 1, argv.size()).toArray(String[]::new);
            new CommandLine(new Main()).parseArgs(appArgs); // throws ParameterException on anything the CLI refuses
            assertEquals("pipeline", appArgs[0]);
            assertEquals(f[1], appArgs[Arrays.asList(appArgs).indexOf("--stages") + 1]);
            // the config values it sets are valid too: --dry-run on the repository's pipeline.yaml
            List<String> dry = new ArrayList<>(Arrays.asList(appArgs));
            dry.set(dry.indexOf("--config") + 1, PipelineTest.repoConfig(tmp).toString());
            dry.add("--dry-run");
            QuantizeLayerCliTest.Run r = QuantizeLayerCliTest.run(dry.toArray(String[]::new));
            assertEquals(0, r.status(), dry + "\n" + r.err());
        }
        assertEquals(List.of("import", "hessian", "quantize", "report", "export"), stages);
    }
}
