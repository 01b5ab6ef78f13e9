"""babai-quant on Airflow: one spark-submit task per pipeline stage, scheduled, with retries.

Every task runs the same application jar and the same pipeline config (params.config, a file in BABAI_CONF_DIR:
conf/pipeline.yaml deployed next to the jar by default), restricted to one stage with --stages, and overrides the
model, the method and the output root from the DAG's params.

The activations come from one of two stages, chosen per run by params.activations (a branch task skips the other):
  import   activation dumps (.npy / .safetensors) listed in the config's `import` section (conf/pipeline.yaml)
  capture  the ONNX model run on the text of the config's `capture` section, as Spark tasks (conf/pipeline-onnx.yaml;
           on a cluster give capture.onnx and capture.tokenizer: the application jar does not embed the demo model)
then hessian → quantize → report → export.
Each stage skips work already done (fingerprints), so a retried or re-triggered task finishes the job; exit status 75
from the pipeline means the storage endpoint was unreachable and nothing partial was committed (Airflow retries it).

Deployment settings come from the environment of the Airflow worker (no secrets here: S3 credentials come from the
standard AWS providers on the cluster, see conf/s3a.properties):
  BABAI_SPARK_SUBMIT   spark-submit binary (default: spark-submit on PATH)
  BABAI_APP_JAR        the application jar built by `mvn package` (see docs/CLUSTER.md for its name)
  BABAI_CONF_DIR       folder holding pipeline.yaml, s3a.properties, spark-defaults.conf (default /opt/babai-quant/conf)
  BABAI_SPARK_MASTER   Spark master (default yarn)
Run a model by hand: airflow dags trigger babai_quant -c '{"model_uri": "s3a://models/llama-3-8b", "method": "babai"}'
Capture instead of importing: -c '{"activations": "capture", "config": "pipeline-onnx.yaml", "model_uri": "/opt/models/enc.onnx"}'
"""
import os
import shlex
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.python import BranchPythonOperator

SPARK_SUBMIT = os.environ.get("BABAI_SPARK_SUBMIT", "spark-submit")
APP_JAR = os.environ.get("BABAI_APP_JAR", "/opt/babai-quant/babai-quant-app.jar")
CONF_DIR = os.environ.get("BABAI_CONF_DIR", "/opt/babai-quant/conf")
MASTER = os.environ.get("BABAI_SPARK_MASTER", "yarn")
MAIN_CLASS = "org.babaiquant.cli.Main"
ACTIVATION_STAGES = ["capture", "import"]
STAGES = ["hessian", "quantize", "report", "export"]

# Spark settings per stage: the quantize stage runs one task per layer and may use GPUs (see conf/spark-defaults.conf).
STAGE_CONF = {
    "capture": {"spark.executor.memory": "4g", "spark.executor.cores": "2"},
    "import": {"spark.executor.instances": "1"},
    "hessian": {"spark.executor.memory": "8g", "spark.executor.cores": "4"},
    "quantize": {"spark.executor.memory": "16g", "spark.executor.cores": "4", "spark.task.cpus": "2"},
    "report": {"spark.executor.instances": "1"},
    "export": {"spark.executor.instances": "1", "spark.driver.memory": "8g"},
}

default_args = {
    "owner": "babai-quant",
    "retries": 3,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=12),
}


def spark_submit(stage):
    """The spark-submit command line of one stage (Jinja renders {{ params.* }} and {{ ds_nodash }} at run time)."""
    argv = [SPARK_SUBMIT, "--master", MASTER, "--deploy-mode", "client",
            "--name", "babai-quant-" + stage,
            "--class", MAIN_CLASS,
            "--properties-file", CONF_DIR + "/spark-defaults.conf"]
    for key, value in sorted(STAGE_CONF[stage].items()):
        argv += ["--conf", key + "=" + value]
    argv += [APP_JAR,
             "pipeline", "--config", CONF_DIR + "/{{ params.config }}", "--stages", stage,
             "--set", "spark.hadoopConf=" + CONF_DIR + "/s3a.properties",
             "--set", "work={{ params.work_uri }}/{{ params.method }}-{{ params.bits }}bit/{{ ds_nodash }}",
             "--set", "model={{ params.model_uri }}",
             "--set", "quantize.method={{ params.method }}",
             "--set", "quantize.bits={{ params.bits }}"]
    return " ".join(shlex.quote(a) if "{{" not in a else "'" + a + "'" for a in argv)


def activation_source(params, **_):
    """The task that produces this run's activations: params.activations is capture or import."""
    source = params["activations"]
    if source not in ACTIVATION_STAGES:
        raise ValueError("params.activations must be capture or import, got %r" % (source,))
    return source


with DAG(
    dag_id="babai_quant",
    description="GPTQ/Babai quantization of an LLM: capture or import → hessian → quantize → report → export",
    schedule="@weekly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params={
        "config": "pipeline.yaml",
        "activations": "import",
        "model_uri": "s3a://babai-models/minilm-l6-v2/model.safetensors",
        "work_uri": "s3a://babai-runs/minilm-l6-v2",
        "method": "gptq",
        "bits": 4,
    },
    tags=["babai-quant", "spark"],
) as dag:
    branch = BranchPythonOperator(task_id="activations", python_callable=activation_source)
    previous = [branch >> BashOperator(task_id=stage, bash_command=spark_submit(stage)) for stage in ACTIVATION_STAGES]
    for stage in STAGES:
        # the skipped activation stage must not skip the rest: run after whichever one succeeded
        task = BashOperator(task_id=stage, bash_command=spark_submit(stage),
                            trigger_rule="none_failed_min_one_success" if stage == STAGES[0] else "all_success")
        for p in previous:
            p >> task
        previous = [task]
