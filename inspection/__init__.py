"""Run inspection: what a finished pipeline run recorded, read back and shown. Nothing here changes a run.

- run_store.py: the one ML Metadata reading layer (store, run by id or LATEST, node ids, TFMA slices, manifest);
- summary.py: the per-component table `tokenlearner run` prints (ran or cached, time, key numbers, blessing);
- report.py, report_figures.py, report_html.py: `tokenlearner report`, one HTML page with PNG figures;
- history.py: the loop run by run (spans trained on, warm start, test accuracy, blessed, pushed version), for
  `tokenlearner history` and the report;
- tensorboard_logs.py: `tokenlearner tensorboard`, the TensorBoard command for a run's Trainer logs;
- evaluation.py: the run's Evaluator executed again on its artifacts, into a scratch folder (bench/evaluator.py
  times it; tests compare its metrics and blessing across Evaluator settings).

Importing it sets TF_USE_LEGACY_KERAS first (trainer/__init__.py; evaluation.py imports TFMA): TFT and TFMA only
work with Keras 2.
"""
import trainer as _keras2  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
