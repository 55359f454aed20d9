"""TFX Trainer entry point (`run_fn`, loaded by the path `trainer.contract.RUN_FN`): build the TokenLearner ViT, fit
it, keep the best epoch, export for serving.

Only the Trainer executor (and tests) import this module: the graph learns the entry point and custom_config keys
from trainer/contract.py, which has no TensorFlow.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from typing import Optional

import tensorflow as tf
import tf_keras as keras
import tensorflow_transform as tft
from tfx import v1 as tfx

from trainer import checkpoints, cluster, distribute, export, flops, inputs, warm_start
from trainer.config import TrainerConfig
from trainer.contract import ASSETS_EXTRA, BACKUP_DIR_KEY, CLASS_NAMES_KEY, MODEL_NAME_KEY, TRAINER_CONFIG_KEY
from trainer.contract import RUN_FN  # noqa: F401  (the path TFX loads `run_fn` by)
from trainer.progress import ProgressLogger
from trainer.recipe import compile_model

WARMUP_IMAGES = 4  # real eval images replayed by TF Serving when it loads the model

log = logging.getLogger(__name__)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains and exports one model; TFX's Trainer executor calls it with the run's FnArgs.

    Args:
      fn_args: train/eval file patterns (the `train` and `eval` splits), the Transform output, and the
        custom_config the graph wrote: the TrainerConfig as a dict (TRAINER_CONFIG_KEY), the class names
        (CLASS_NAMES_KEY), the TF Serving model name (MODEL_NAME_KEY) and the checkpoint backup folder
        (BACKUP_DIR_KEY, optional); `base_model`: the latest blessed model's SavedModel folder, or None.

    Warm start (trainer/warm_start.py): with `warm_start="auto"` and a base model of the same architecture and class
    list, the model starts from the base's weights and trains `retrain_epochs` epochs, logging `warm start from
    <base model> (span N)`; otherwise it trains `epochs` epochs from scratch, logging `training from scratch:
    <reason>`. A base trained on these very Examples with these very settings (no new span since) is re-exported
    unchanged, without training.

    Produces: in `fn_args.model_run_dir` the TensorBoard logs, history.csv, epoch_times.csv, model_stats.json and
    training.json (spans trained on, warm start); in `fn_args.serving_model_dir` the SavedModel of the best epoch
    with its serving signatures, and under its assets.extra/ the class names, model_stats.json and TF Serving warmup
    requests; beside it, in the Model artifact's warm_start/, what a later warm start loads. Epoch checkpoints in the
    backup folder let a killed run resume; they are removed once the export is complete.

    When TF_CONFIG names several workers (trainer/cluster.py), every worker calls this with the same FnArgs and
    trains one replica of MultiWorkerMirroredStrategy; `cfg.batch_size` is the batch of each replica. The backup
    folder must be one that every worker reads (gs://, a shared file system). Only the chief writes the folders
    above; the others write the same files into a local temporary folder they delete. A worker that stops answering
    makes the others raise `distribute.PeerFailure` (one line naming it) instead of waiting for it.
    """
    workers = cluster.from_env()  # pure Python: no TensorFlow op may run before the strategy below exists
    gpus = tf.config.list_physical_devices("GPU")  # listed once: the choices below see the same devices
    strategy = distribute.choose_strategy(gpus, workers)  # multi-worker: waits for every worker to start
    cfg = TrainerConfig.from_dict(fn_args.custom_config[TRAINER_CONFIG_KEY])
    if workers is None:
        _train_and_export(fn_args, cfg, strategy, gpus, workers)
        return
    log.info("%s", distribute.describe_multi_worker(workers, strategy, cfg.batch_size))
    try:
        _train_and_export(fn_args, cfg, strategy, gpus, workers)
    except distribute.PEER_ERRORS as e:
        # Raised, not logged: the caller reports it once (trainer/worker.py's one line, the TFX executor's log).
        raise distribute.peer_failure(workers, e) from None


def _train_and_export(fn_args: tfx.components.FnArgs, cfg: TrainerConfig, strategy: tf.distribute.Strategy,
                      gpus: list, workers: Optional[cluster.Cluster]) -> None:
    chief = workers is None or workers.is_chief
    scratch: Optional[str] = None
    if workers is not None and not chief:
        scratch = tempfile.mkdtemp(prefix=f"tokenlearner-worker{workers.worker_id()}-")
        log.info("%s is not the chief: it writes its model and logs into %s and removes them", workers.describe(),
                 scratch)
    try:
        _fit_and_export(fn_args, cfg, strategy, gpus, workers, chief,
                        model_run_dir=(fn_args.model_run_dir if scratch is None
                                       else os.path.join(scratch, "model_run")),
                        serving_model_dir=(fn_args.serving_model_dir if scratch is None
                                           else os.path.join(scratch, "serving")))
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _fit_and_export(fn_args: tfx.components.FnArgs, cfg: TrainerConfig, strategy: tf.distribute.Strategy,
                    gpus: list, workers: Optional[cluster.Cluster], chief: bool, model_run_dir: str,
                    serving_model_dir: str) -> None:
    """run_fn's work, writing into `model_run_dir` and `serving_model_dir` (a worker other than the chief: into its
    temporary folder)."""
    class_names = list(fn_args.custom_config[CLASS_NAMES_KEY])
    start = warm_start.plan(cfg, class_names, getattr(fn_args, "base_model", None), fn_args.train_files)
    log.info("%s", start.message)  # "warm start from <base> (span N)" | "training from scratch: <reason>" | ...
    warm_start.write_training(model_run_dir, start)
    if start.unchanged:  # no new data since the base, same settings: nothing to learn (a scheduled re-run)
        warm_start.reexport(start, serving_model_dir, model_run_dir)
        return
    fit_cfg = dataclasses.replace(cfg, epochs=start.epochs)  # a warm start: retrain_epochs, and its schedule
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    replicas = strategy.num_replicas_in_sync
    global_batch = cfg.batch_size * replicas
    num_train, num_eval = inputs.count_examples(fn_args.train_files), inputs.count_examples(fn_args.eval_files)
    # Seeded before the input pipelines too (compile_model seeds the weights), so a multi-worker fit draws the random
    # views a single process of its global batch draws. Exactly so only with TF_DETERMINISTIC_OPS=1: the views are
    # drawn in a parallel map, whose threads otherwise take the random stream in whatever order they run.
    keras.utils.set_random_seed(cfg.seed)
    # The input pipelines batch global batches; a distributed fit splits each into the replicas' batches.
    batched = dataclasses.replace(cfg, batch_size=global_batch)
    steps_per_epoch = inputs.epoch_steps(num_train, batched)
    # Endless, so that fit keeps one training iterator for all its epochs (inputs.make_dataset says why).
    train_ds = inputs.make_dataset(fn_args.train_files, tft_output, batched, training=True, num_examples=num_train,
                                   repeat=True)
    eval_ds = inputs.make_dataset(fn_args.eval_files, tft_output, batched, training=False, num_examples=num_eval)
    if workers is not None:
        train_ds, eval_ds = distribute.shard_by_example(train_ds), distribute.shard_by_example(eval_ds)

    precision = distribute.machine_precision(cfg, gpus)  # logs "precision: bfloat16 (auto: avx512_bf16)"
    # logs "jit_compile: on (auto: ...)"
    jit_compile = distribute.machine_jit_compile(cfg, precision, gpus, multi_worker=workers is not None)
    # MirroredStrategy on >1 GPU, MultiWorkerMirroredStrategy on several workers; the dtype policy
    with distribute.training_scope(cfg, gpus, precision=precision, strategy=strategy):
        model = compile_model(fit_cfg, steps_per_epoch=steps_per_epoch, jit_compile=jit_compile.on)
        if start.base_model is not None:  # warm: a killed warm start that resumes gets its epoch checkpoint's
            warm_start.load_weights(model, start.base_model)  # weights at fit's start
    log.info("model %s: %d parameters; %d training / %d validation examples; global batch %d; config %s", model.name,
             model.count_params(), num_train, num_eval, global_batch, json.dumps(cfg.to_dict()))
    # model_stats.json: parameters, GFLOPs (two conventions), training precision and XLA
    stats = flops.report(model, model_run_dir, precision=str(precision), jit_compile=str(jit_compile))
    backup = checkpoints.backup_dir(
        fn_args.custom_config.get(BACKUP_DIR_KEY) or os.path.join(fn_args.model_run_dir, "backup"),
        cfg.to_dict(), fn_args.train_files, fn_args.transform_output, base_model=start.base_model)
    if chief:
        checkpoints.discard_finished(backup)  # a finished run's epochs are not this fit's
    if workers is not None:
        distribute.barrier(strategy)  # ... and no worker reads them before the chief removed them
    callbacks = [
        keras.callbacks.TensorBoard(log_dir=model_run_dir, update_freq="epoch"),
        *checkpoints.callbacks(backup, precision.name, jit_compile.name, chief=chief),
        ProgressLogger(fit_cfg.epochs, steps_per_epoch=steps_per_epoch),
    ]
    try:
        model.fit(train_ds, validation_data=eval_ds, epochs=fit_cfg.epochs, steps_per_epoch=steps_per_epoch,
                  callbacks=callbacks, verbose=2)
    except tf.errors.UnimplementedError as e:
        failure = distribute.xla_unsupported(precision, jit_compile, e)
        if failure is None:
            raise
        log.error("%s", failure)
        raise failure from None
    if workers is not None:
        distribute.barrier(strategy)  # the chief has written the last best epoch before anyone reads it
    checkpoints.finish(backup, model, model_run_dir, chief=chief)
    # Before the export, which attaches the Transform layer to `model`: the weights file holds the network alone.
    warm_start.save(model, cfg, start, serving_model_dir, model_run_dir)
    export.export_serving_model(model, tft_output, cfg, class_names, serving_model_dir)
    flops.write(stats, os.path.join(serving_model_dir, ASSETS_EXTRA))
    export.write_warmup_requests(serving_model_dir, fn_args.custom_config[MODEL_NAME_KEY],
                                 export.read_encoded_images(fn_args.eval_files, WARMUP_IMAGES))
    if workers is not None:
        distribute.barrier(strategy)  # every worker has read the best epoch before the chief removes it
    if chief:
        checkpoints.mark_finished(backup, serving_model_dir)  # should the removal fail, no later fit resumes it
        checkpoints.remove(backup)
