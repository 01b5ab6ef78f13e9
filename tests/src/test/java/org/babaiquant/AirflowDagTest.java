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
import java.util.Map;
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
            import ast, json, sys, types, shlex, re
            src = open(sys.argv[1]).read()
            overrides = json.loads(sys.argv[2])
            ast.parse(src)
            tasks, dags = [], []
            class DAG:
                def __init__(self, dag_id, **kw): self.dag_id = dag_id; self.kw = kw; dags.append(self)
                def __enter__(self): return self
                def __exit__(self, *a): return False
            class Operator:
                def __init__(self, task_id, **kw): self.task_id = task_id; self.kw = kw; self.up = []; tasks.append(self)
                def __rshift__(self, other): other.up.append(self.task_id); return other
            class BashOperator(Operator):
                pass
            class BranchPythonOperator(Operator):
                pass
            airflow = types.ModuleType('airflow'); airflow.DAG = DAG
            ops = types.ModuleType('airflow.operators')
            bash = types.ModuleType('airflow.operators.bash'); bash.BashOperator = BashOperator
            python = types.ModuleType('airflow.operators.python'); python.BranchPythonOperator = BranchPythonOperator
            sys.modules.update({'airflow': airflow, 'airflow.operators': ops, 'airflow.operators.bash': bash,
                                'airflow.operators.python': python})
            exec(compile(src, sys.argv[1], 'exec'), {'__name__': 'dag'})
            d = dags[0]
            params = dict(d.kw['params']); params.update(overrides)
            print('DAG', d.dag_id, d.kw.get('schedule'), d.kw['default_args'].get('retries'))
            for t in tasks:
                if isinstance(t, BranchPythonOperator):
                    f = t.kw['python_callable']
                    choices = [f(params=dict(params, activations=a)) for a in ('import', 'capture')]
                    try:
                        f(params=dict(params, activations='dumps')); choices.append('accepted')
                    except ValueError:
                        choices.append('refused')
                    print('BRANCH', t.task_id, ','.join(t.up) or '-', ','.join(choices), f(params=params))
                    continue
                cmd = re.sub(r'\\{\\{\\s*params\\.(\\w+)\\s*\\}\\}', lambda m: str(params[m.group(1)]), t.kw['bash_command'])
                cmd = re.sub(r'\\{\\{\\s*ds_nodash\\s*\\}\\}', '20260105', cmd)
                assert '{{' not in cmd, cmd
                print('TASK', t.task_id, ','.join(t.up) or '-', t.kw.get('trigger_rule', 'all_success'), '\\x1f'.join(shlex.split(cmd)))
            """;

    /**
     * One task of the DAG: its upstream task ids, trigger rule and rendered argv; the branch task has no argv and the
     * stage it picks with the rendered params in {@code branchChoice}.
     */
    record Task(String id, List<String> upstream, String triggerRule, String branchChoice, List<String> argv) {}

    /** The DAG rendered with its default params and {@code overrides}, in the environment {@code env}; null without python3. */
    static List<Task> render(Path tmp, Map<String, String> env, String overridesJson) throws Exception {
        Path dag = RealData.repoRoot().resolve("conf/airflow/babai_quant_dag.py");
        Path harness = tmp.resolve("harness.py");
        Files.writeString(harness, HARNESS);
        ProcessBuilder pb = new ProcessBuilder("python3", harness.toString(), dag.toString(), overridesJson).redirectErrorStream(true);
        pb.environment().putAll(env);
        Process p;
        try {
            p = pb.start();
        } catch (IOException noPython) {
            return null;
        }
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), out);
        String[] lines = out.strip().split("\n");
        assertTrue(lines[0].startsWith("DAG babai_quant @weekly 3"), "scheduled, with retries: " + lines[0]);
        List<Task> tasks = new ArrayList<>();
        for (String line : Arrays.copyOfRange(lines, 1, lines.length)) {
            String[] f = line.split(" ", 5);
            List<String> up = f[2].equals("-") ? List.of() : List.of(f[2].split(","));
            if (f[0].equals("BRANCH")) {
                // the branch picks the stage named by params.activations and refuses anything else
                assertEquals("import,capture,refused", f[3], line);
                tasks.add(new Task(f[1], up, "all_success", f[4], List.of()));
            } else {
                assertEquals("TASK", f[0], line);
                tasks.add(new Task(f[1], up, f[3], null, List.of(f[4].split("\u001f"))));
            }
        }
        return tasks;
    }

    @Test
    void everySparkSubmitOfTheDagNamesOurMainClassAndArgumentsTheCliAccepts(@TempDir Path tmp) throws Exception {
        List<Task> tasks = render(tmp, Map.of(), "{}");
        Assumptions.assumeTrue(tasks != null, "python3 is not installed");
        assertEquals(List.of("activations", "capture", "import", "hessian", "quantize", "report", "export"),
                tasks.stream().map(Task::id).toList());
        assertEquals("import", tasks.get(0).branchChoice(), "the default run imports activation dumps");
        assertEquals(List.of(List.of(), List.of("activations"), List.of("activations"), List.of("capture", "import"),
                List.of("hessian"), List.of("quantize"), List.of("report")), tasks.stream().map(Task::upstream).toList());
        assertEquals("none_failed_min_one_success", tasks.get(3).triggerRule(), "hessian runs after the one activation stage that ran");
        for (Task t : tasks.subList(1, tasks.size())) {
            List<String> argv = t.argv();
            assertTrue(argv.get(0).endsWith("spark-submit"), t.toString());
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
            assertEquals(t.id(), appArgs[Arrays.asList(appArgs).indexOf("--stages") + 1]);
            // the config values it sets are valid too: --dry-run on the repository's config for that stage (capture
            // reads text through conf/pipeline-onnx.yaml; the others import dumps through conf/pipeline.yaml)
            List<String> dry = new ArrayList<>(Arrays.asList(appArgs));
            assertTrue(dry.get(dry.indexOf("--config") + 1).endsWith("/pipeline.yaml"), "params.config defaults to pipeline.yaml");
            dry.set(dry.indexOf("--config") + 1, (t.id().equals("capture") ? onnxConfig(tmp) : PipelineTest.repoConfig(tmp)).toString());
            dry.add("--dry-run");
            QuantizeLayerCliTest.Run r = QuantizeLayerCliTest.run(dry.toArray(String[]::new));
            assertEquals(0, r.status(), dry + "\n" + r.err());
        }
    }

    /** conf/pipeline-onnx.yaml with its repository-relative text paths made absolute. */
    private static Path onnxConfig(Path dir) throws IOException {
        String yaml = Files.readString(RealData.repoRoot().resolve("conf/pipeline-onnx.yaml"));
        Path cfg = dir.resolve("pipeline-onnx.yaml");
        Files.writeString(cfg, yaml.replaceAll("(?<=[\\s\\[])data/text/",
                java.util.regex.Matcher.quoteReplacement(RealData.repoRoot().resolve("data/text").toAbsolutePath().normalize() + "/")));
        return cfg;
    }
}
