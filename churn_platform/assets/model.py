"""The weekly model: train and register, decide champion/challenger, score with the champion.

MLflow and scikit-learn are imported only inside the asset bodies and the `MlflowRegistry`
methods they call: the code location loads in a fraction of a second and only the steps that
train or score pay for them. The assets reach MLflow only through that resource.
"""

import base64
import datetime as dt

import dagster as dg
from pydantic import create_model

from churn_platform import automation
from churn_platform.checks.model import auc_floor_result, auc_floor_spec
from churn_platform.checks.scores import population_drift_result, population_drift_spec
from churn_platform.constants import (
    CHURN_LABELS,
    CHURN_MODEL,
    CHURN_SCORES,
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    MODEL_GROUP,
    PROMOTION_DECISION,
    PROMOTION_POOL,
    TRAINING_POOL,
    USER_FEATURES,
    WAREHOUSE_POOL,
)
from churn_platform.contact_economics import ContactEconomics
from churn_platform.freshness import WEEKLY_OUTPUT_FRESHNESS
from churn_platform.ml.params import TrainingParams
from churn_platform.partitions import TRAINING_FEATURES_MAPPING, week_window
from churn_platform.resources.mlflow_registry import MlflowRegistry
from churn_platform.resources.notify import Notifier
from churn_platform.resources.score_publisher import ScorePublisher
from churn_platform.gate_thresholds import GateThresholds
from churn_platform.resources.spark_jobs import SparkJobs
from churn_platform.resources.spark_warehouse import SparkWarehouse
from churn_platform.resources.warehouse import CHURN_SCORES_DDL, DuckDBWarehouse, Warehouse
from churn_platform.retries import EXTERNAL_SERVICE_RETRY

BOOTSTRAP_SEED = 0  # the interval of a decision is reproducible: the same holdout gives the same bounds


TrainingConfig = create_model(
    "TrainingConfig",
    __base__=dg.Config,
    __module__=__name__,
    __doc__=(
        "Estimator hyperparameters (launchpad-editable): the tunable fields of TrainingParams, "
        "with its defaults (small trees, slow rate), which match the AUC of the pandas + "
        "GradientBoosting baseline within 0.005 on generated data at ~10x less fit time."
    ),
    **TrainingParams.tunable(),
)


def training_as_of(context: dg.AssetExecutionContext) -> dt.date:
    """Partition K trains on the features whose label window closed at K's as-of date."""
    return week_window(context.partition_time_window).training_as_of


def load_training_set(warehouse: Warehouse, as_of: dt.date):
    with warehouse.connect(read_only=True) as con:
        return con.execute(
            """
            SELECT f.*, l.churned
            FROM user_features f JOIN churn_labels l USING (as_of_date, user_id)
            WHERE f.as_of_date = ?
            ORDER BY f.user_id
            """,
            [as_of],
        ).df()


def evaluation_report(evaluation, plots: dict[str, bytes], run_link: str) -> str:
    """Markdown for the UI: the plots inline (data URIs, as Dagster's own guide does), then the
    tables, then where the same plots live in MLflow."""
    from churn_platform.ml.holdout_evaluation import evaluation_markdown

    images = "\n".join(
        f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})" for name, png in plots.items()
    )
    return (
        f"{images}\n\n{evaluation_markdown(evaluation)}\n\n"
        f"Plots, `evaluation.json` and `model_card.md` are artifacts of the MLflow run: {run_link}\n"
    )


# A week's scores beside the features they were computed from (both engines' SQL).
SCORED_WITH_FEATURES_SQL = (
    "SELECT s.user_id, s.churn_probability, s.risk_decile, s.model_version, "
    + ", ".join(f"f.{column}" for column in FEATURE_COLUMNS)
    + " FROM churn_scores s JOIN user_features f ON s.as_of_date = f.as_of_date AND s.user_id = f.user_id"
    " WHERE s.as_of_date = ? ORDER BY s.user_id"
)


def _latest_model_metadata(context: dg.AssetExecutionContext) -> dict:
    """Metadata of churn_model's newest materialization for this partition."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(CHURN_MODEL), asset_partitions=[context.partition_key]),
        limit=1,
    ).records
    if not records:
        raise dg.Failure(f"churn_model has no materialization for partition {context.partition_key}",
                         allow_retries=False)
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def _interval_metadata(interval) -> dict:
    """The bootstrap interval of the AUC delta; NaN (a gap in the UI's plot) without a champion."""
    if interval is None:
        return {"delta_low": float("nan"), "delta_high": float("nan"), "within_noise": "no champion"}
    return {"delta_low": interval.low, "delta_high": interval.high, "within_noise": str(interval.within_noise)}


def build_model_assets(
    weekly, thresholds: GateThresholds, engine: str, economics: ContactEconomics = ContactEconomics()
) -> list[dg.AssetsDefinition]:
    min_rows = thresholds.min_training_rows
    min_auc = thresholds.min_auc
    min_delta = thresholds.min_auc_delta

    @dg.asset(
        name=CHURN_MODEL,
        group_name=MODEL_GROUP,
        partitions_def=weekly,
        deps=[
            dg.AssetDep(USER_FEATURES, partition_mapping=TRAINING_FEATURES_MAPPING),
            dg.AssetDep(CHURN_LABELS),
        ],
        pool=TRAINING_POOL,
        retry_policy=EXTERNAL_SERVICE_RETRY,
        automation_condition=automation.weekly_model(),
        freshness_policy=WEEKLY_OUTPUT_FRESHNESS,
        kinds={"scikitlearn", "mlflow"},
        check_specs=[auc_floor_spec(min_auc)],
    )
    def churn_model(
        context: dg.AssetExecutionContext, config: TrainingConfig, warehouse: Warehouse,
        mlflow: MlflowRegistry,
    ):
        """Churn classifier trained on the features four weeks back joined with their labels.

        Every training is one MLflow run and a new version of `churn_prediction`.
        """
        from churn_platform.ml.drift import feature_psi
        from churn_platform.ml.holdout_evaluation import evaluate_holdout
        from churn_platform.ml.model_card import model_card
        from churn_platform.ml.training import train

        as_of = training_as_of(context)
        mlflow.ensure_experiment()  # a tracking server that is down fails here, before the fit
        data = load_training_set(warehouse, as_of)
        if len(data) < min_rows:
            raise dg.Failure(
                f"training set for as-of {as_of} has {len(data)} rows, the gate needs {min_rows}",
                metadata={"rows": len(data), "min_training_rows": min_rows},
                allow_retries=False,
            )
        params = TrainingParams(**config.model_dump())
        trained = train(data, params)
        evaluation = evaluate_holdout(trained.model, trained.holdout, n_threads=params.n_threads)
        champion = mlflow.champion()
        drift = None if champion is None else feature_psi(mlflow.holdout(champion.run_id), data)
        data_window = f"features and labels at as-of {as_of}"

        def card(version: str) -> str:
            return model_card(
                version=version, partition_key=context.partition_key, data_window=data_window,
                training_rows=len(data) - len(trained.holdout), holdout_rows=len(trained.holdout),
                churn_rate=float(data["churned"].mean()), params=params.as_dict(), evaluation=evaluation,
                drift=drift, drift_reference=None if champion is None else
                f"the holdout of champion v{champion.version}", max_psi=thresholds.max_psi,
            )

        logged = mlflow.register_training(
            trained,
            partition_key=context.partition_key,
            dagster_run_id=context.run.run_id,
            data_window=data_window,
            evaluation=evaluation,
            model_card=card,
        )
        context.log.info(f"registered churn_prediction v{logged.model_version}: {logged.metrics}")
        link = logged.run_url or logged.run_ui_path
        yield dg.MaterializeResult(
            metadata={
                **{k: float(v) for k, v in logged.metrics.items()},
                "training_as_of": as_of.isoformat(),
                "model_version": str(logged.model_version),
                "mlflow_run_id": logged.run_id,
                "mlflow_run": dg.MetadataValue.url(link) if link.startswith("http") else link,
                "fit_seconds": trained.fit_seconds,
                "evaluation": dg.MetadataValue.md(evaluation_report(evaluation, logged.plots, link)),
                **({} if drift is None else {"max_psi_vs_champion": max(drift.values())}),
            }
        )
        yield auc_floor_result(logged.metrics["roc_auc"], min_auc, str(logged.model_version))

    @dg.asset(
        name=PROMOTION_DECISION,
        group_name=MODEL_GROUP,
        partitions_def=weekly,
        deps=[CHURN_MODEL],
        pool=PROMOTION_POOL,  # one decision at a time: each compares against the current champion
        retry_policy=EXTERNAL_SERVICE_RETRY,
        automation_condition=automation.after_upstream(),
        kinds={"mlflow"},
    )
    def promotion_decision(context: dg.AssetExecutionContext, mlflow: MlflowRegistry, notifier: Notifier):
        """Champion/challenger decision on the challenger's holdout; moves the `champion` alias.

        Promotes when the challenger's AUC beats the champion's by the configured delta, or when
        there is no champion. The decision is recorded on the model versions and here.
        """
        from churn_platform.ml.campaign_value import campaign_value_markdown, campaign_values
        from churn_platform.ml.evaluation import bootstrap_auc_delta
        from churn_platform.ml.mlflow_io import version_number
        from churn_platform.ml.promotion import decide_promotion, holdout_aucs

        model = _latest_model_metadata(context)
        if model["roc_auc"] < min_auc:
            raise dg.Failure(
                f"challenger v{model['model_version']} has AUC {model['roc_auc']:.4f} below the floor "
                f"{min_auc}: never promoted", allow_retries=False,
            )
        challenger = mlflow.model_version(model["model_version"])
        champion = mlflow.champion()
        scores = mlflow.score_holdout(challenger, champion, mlflow.holdout(model["mlflow_run_id"]))
        challenger_auc, champion_auc = holdout_aucs(scores)
        interval = None if scores.champion is None else bootstrap_auc_delta(
            scores.labels, scores.champion, scores.challenger, seed=BOOTSTRAP_SEED
        )
        values = campaign_values(scores, economics)
        # A step that ran before gets back the decision its first attempt recorded.
        promotion = mlflow.promote(
            decide_promotion(challenger_auc, champion_auc, min_delta=min_delta, interval=interval),
            challenger, champion, appendix=campaign_value_markdown(values, economics),
        )
        decision, previous = promotion.decision, promotion.previous_champion_version
        new_champion = mlflow.champion()
        notifier.send(
            f"churn_prediction [{context.partition_key}]: "
            f"{'PROMOTED' if decision.promote else 'KEPT CHAMPION'} — challenger v{model['model_version']} "
            f"AUC {decision.challenger_auc:.4f} vs champion "
            f"{'none' if previous is None else f'v{previous} AUC {decision.champion_auc:.4f}'}; "
            f"{decision.reason}",
            log=context.log,
        )
        return dg.MaterializeResult(
            metadata={
                "decision": "promote" if decision.promote else "keep",
                "promoted": decision.promote,
                "challenger_version": str(model["model_version"]),
                "challenger_auc": decision.challenger_auc,
                "champion_auc": decision.champion_auc if decision.champion_auc is not None else float("nan"),
                "delta": decision.delta if decision.delta is not None else float("nan"),
                "previous_champion": previous or "none",
                "champion_version": version_number(new_champion) if new_champion else "none",
                "reason": decision.reason,
                **_interval_metadata(decision.interval),
                **{
                    f"expected_value_top_10pct_{name}": next(v.expected_value for v in per_model if v.fraction == 0.1)
                    for name, per_model in values.items()
                },
                "decided_at": promotion.decided_at,
                "report": dg.MetadataValue.md(promotion.report),
            }
        )

    scores_asset = dg.asset(
        name=CHURN_SCORES,
        group_name=MODEL_GROUP,
        partitions_def=weekly,
        deps=[USER_FEATURES, PROMOTION_DECISION],
        pool=WAREHOUSE_POOL,  # also one publish per week at a time
        retry_policy=EXTERNAL_SERVICE_RETRY,
        automation_condition=automation.after_upstream(),
        freshness_policy=WEEKLY_OUTPUT_FRESHNESS,
        kinds={engine, "mlflow", "s3"},
        check_specs=[population_drift_spec(thresholds.max_psi)],
        description=(
            "Churn probability, risk decile and top three reasons of every user in the week's features, "
            "from the champion model; published to S3 for the CRM."
        ),
    )

    def champion_model(mlflow: MlflowRegistry):
        champion = mlflow.champion()
        if champion is None:
            raise dg.Failure("no champion model yet: materialize churn_model and promotion_decision first",
                             allow_retries=False)
        return champion, mlflow.load_model(champion)

    def publish_and_check_drift(context, score_publisher: ScorePublisher, mlflow: MlflowRegistry, champion, model,
                                as_of: dt.date, scored, metadata: dict):
        """Publish the week's scores for the CRM, then measure drift against the champion's population."""
        from churn_platform.ml.drift import population_drift
        from churn_platform.ml.training import prepare_features

        published = score_publisher.publish(
            as_of, scored[["user_id", "churn_probability", "risk_decile", "model_version"]], run_id=context.run.run_id
        )
        reference = mlflow.holdout(champion.run_id)
        drift = population_drift(
            reference, scored, model.predict_proba(prepare_features(reference))[:, 1],
            scored["churn_probability"].to_numpy(), max_psi=thresholds.max_psi,
        )
        context.log.info(f"published {published.rows} scores to {published.uri}; drift: {drift.summary()}")
        yield dg.MaterializeResult(
            metadata={
                **metadata,
                "rows": len(scored),
                "as_of_date": as_of.isoformat(),
                "mean_churn_probability": float(scored["churn_probability"].mean()),
                "share_above_0_5": float((scored["churn_probability"] > 0.5).mean()),
                "champion_training_churn_rate": float(reference[LABEL_COLUMN].mean()),
                "drift": drift.summary(),
                "published_manifest": published.manifest_uri,
                "published_sha256": published.sha256,
                **drift.metadata(),
            }
        )
        yield population_drift_result(drift, champion.version)

    if engine == "spark":
        @scores_asset
        def churn_scores_on_spark(context: dg.AssetExecutionContext, warehouse: SparkWarehouse,
                                  mlflow: MlflowRegistry, spark_jobs: SparkJobs, score_publisher: ScorePublisher):
            from churn_platform.ml.mlflow_io import version_number
            from churn_platform.spark.scoring import score_on_spark

            champion, model = champion_model(mlflow)
            as_of = week_window(context.partition_time_window).last_as_of
            counts = score_on_spark(context, warehouse, spark_jobs, model, version_number(champion), as_of)
            if not counts["rows"]:
                raise dg.Failure(f"user_features has no rows at as-of {as_of}", allow_retries=False)
            with warehouse.connect(read_only=True) as con:
                scored = con.execute(SCORED_WITH_FEATURES_SQL, [as_of]).df()
            yield from publish_and_check_drift(context, score_publisher, mlflow, champion, model, as_of, scored,
                                               {"model_version": version_number(champion)})

        return [churn_model, promotion_decision, churn_scores_on_spark]

    @scores_asset
    def churn_scores(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, mlflow: MlflowRegistry,
                     score_publisher: ScorePublisher):
        from churn_platform.ml.mlflow_io import version_number
        from churn_platform.ml.scoring import score_users

        champion, model = champion_model(mlflow)
        as_of = week_window(context.partition_time_window).last_as_of
        with warehouse.connect(read_only=True) as con:
            features = con.execute(
                "SELECT * FROM user_features WHERE as_of_date = ? ORDER BY user_id", [as_of]
            ).df()
        if features.empty:
            raise dg.Failure(f"user_features has no rows at as-of {as_of}", allow_retries=False)
        scores = score_users(model, features, version_number(champion))
        warehouse.replace_partition(CHURN_SCORES, CHURN_SCORES_DDL, "as_of_date", as_of, scores)
        scored = scores.merge(features.drop(columns=["as_of_date"]), on="user_id", validate="one_to_one")
        yield from publish_and_check_drift(context, score_publisher, mlflow, champion, model, as_of, scored,
                                           {"model_version": version_number(champion)})

    return [churn_model, promotion_decision, churn_scores]
