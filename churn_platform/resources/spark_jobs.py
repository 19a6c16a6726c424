"""Launching the platform's PySpark jobs (churn_platform/spark/<job>.py) through Dagster Pipes.

Their log lines appear in the step's log and the counts they report come back as Pipes
messages, whichever launcher runs them: a subprocess on this host (`local[2]`, the default),
or EMR Serverless (dagster-aws `PipesEMRServerlessClient`, CHURN_SPARK_JOBS=emr-serverless),
where the context and messages travel through an S3 bucket.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg

from churn_platform.resources.spark_warehouse import SparkWarehouse

PIPES_MESSAGES_VAR = "CHURN_PIPES_MESSAGES"  # "s3": the job writes its messages to the Pipes bucket


class SparkJobs(dg.ConfigurableResource):
    """Runs a job as a subprocess of the run worker, with the warehouse's session settings."""

    def run(self, context, job: str, extras: dict, warehouse: SparkWarehouse) -> list[dict]:
        """Run `job` to completion under the warehouse lock; returns the messages it reported."""
        Path(warehouse.spark_dir).mkdir(parents=True, exist_ok=True)
        with warehouse.lock(exclusive=True):
            return dg.PipesSubprocessClient().run(
                command=[sys.executable, "-m", f"churn_platform.spark.{job}"],
                context=context,
                extras=extras,
                env=warehouse.job_environment(),
                cwd=warehouse.spark_dir,
            ).get_custom_messages()


class EmrServerlessSparkJobs(SparkJobs):
    """The same jobs on an EMR Serverless application. `code_uri` holds each job's entry point
    (`<job>.py`) and the package as `churn_platform.zip`; `pipes_bucket` carries Pipes context
    and messages. Configured, not run here: there is no cluster on this machine."""

    application_id: str
    execution_role_arn: str
    code_uri: str
    pipes_bucket: str

    def start_job_run_params(self, job: str, conf: dict[str, str]) -> dict:
        code = self.code_uri.rstrip("/")
        settings = {**conf, f"spark.emr-serverless.driverEnv.{PIPES_MESSAGES_VAR}": "s3"}
        submit = " ".join(f"--conf {key}={value}" for key, value in sorted(settings.items()))
        return {
            "applicationId": self.application_id,
            "executionRoleArn": self.execution_role_arn,
            "name": f"churn-{job}",
            "jobDriver": {"sparkSubmit": {
                "entryPoint": f"{code}/{job}.py",
                "sparkSubmitParameters": f"--py-files {code}/churn_platform.zip {submit}",
            }},
        }

    def run(self, context, job: str, extras: dict, warehouse: SparkWarehouse) -> list[dict]:
        import boto3
        from dagster_aws.pipes import PipesEMRServerlessClient, PipesS3ContextInjector, PipesS3MessageReader

        s3 = boto3.client("s3")
        client = PipesEMRServerlessClient(
            client=boto3.client("emr-serverless"),
            context_injector=PipesS3ContextInjector(bucket=self.pipes_bucket, client=s3),
            message_reader=PipesS3MessageReader(bucket=self.pipes_bucket, client=s3),
        )
        with warehouse.lock(exclusive=True):  # a shared catalog admits many; this orders our writers
            return client.run(
                context=context, start_job_run_params=self.start_job_run_params(job, warehouse.conf), extras=extras
            ).get_custom_messages()
