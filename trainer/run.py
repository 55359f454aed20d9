"""TFX Trainer entry point (`run_fn`, loaded by the path `trainer.contract.RUN_FN`): build the TokenLearner ViT, fit
it, keep the best epoch, export for serving.

Only the Trainer executor (and tests) import this module: the graph learns the entry point and custom_config keys
from trainer/contract.py, which has no TensorFlow.
"""
from __future__ import annotations

import json
import logging
import os

import tensorflow as tf
import tf_keras as keras
import tensorflow_transform as tft
from tfx import v1 as tfx

from trainer import checkpoints, distribute, export, flops, inputs
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
        (BACKUP_DIR_KEY, optional).

    Produces: in `fn_args.model_run_dir` the TensorBoard logs, history.csv, epoch_times.csv and model_stats.json; in
    `fn_args.serving_model_dir` the SavedModel of the best epoch with its serving signatures, and under its
    assets.extra/ the class names, model_stats.json and TF Serving warmup requests. Epoch checkpoints in the
    backup folder let a killed run resume; they are removed once the export is complete.
    """
    cfg = TrainerConfig.from_dict(fn_args.custom_config[TRAINER_CONFIG_KEY])
    class_names = list(fn_args.custom_config[CLASS_NAMES_KEY])
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    num_train, num_eval = inputs.count_examples(fn_args.train_files), inputs.count_examples(fn_args.eval_files)
    train_ds = inputs.make_dataset(fn_args.train_files, tft_output, cfg, training=True, num_examples=num_train)
    eval_ds = inputs.make_dataset(fn_args.eval_files, tft_output, cfg, training=False, num_examples=num_eval)

    gpus = tf.config.list_physical_devices("GPU")  # listed once: the three choices below see the same devices
    precision = distribute.machine_precision(cfg, gpus)  # logs "precision: bfloat16 (auto: avx512_bf16)"
    jit_compile = distribute.machine_jit_compile(cfg, precision, gpus)  # logs "jit_compile: on (auto: ...)"
    with distribute.training_scope(cfg, gpus, precision=precision):  # MirroredStrategy on >1 GPU; the dtype policy
        model = compile_model(cfg, steps_per_epoch=-(-num_train // cfg.batch_size), jit_compile=jit_compile.on)
    log.info("model %s: %d parameters; %d training / %d validation examples; config %s", model.name,
             model.count_params(), num_train, num_eval, json.dumps(cfg.to_dict()))
    # model_stats.json: parameters, GFLOPs (two conventions), training precision and XLA
    stats = flops.report(model, fn_args.model_run_dir, precision=str(precision), jit_compile=str(jit_compile))
    backup = checkpoints.backup_dir(
        fn_args.custom_config.get(BACKUP_DIR_KEY) or os.path.join(fn_args.model_run_dir, "backup"),
        cfg.to_dict(), fn_args.train_files, fn_args.transform_output)
    callbacks = [
        keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
        *checkpoints.callbacks(backup, precision.name, jit_compile.name),
        ProgressLogger(cfg.epochs, steps_per_epoch=-(-num_train // cfg.batch_size)),
    ]
    model.fit(train_ds, validation_data=eval_ds, epochs=cfg.epochs, callbacks=callbacks, verbose=2)
    checkpoints.finish(backup, model, fn_args.model_run_dir)
    export.export_serving_model(model, tft_output, cfg, class_names, fn_args.serving_model_dir)
    flops.write(stats, os.path.join(fn_args.serving_model_dir, ASSETS_EXTRA))
    export.write_warmup_requests(fn_args.serving_model_dir, fn_args.custom_config[MODEL_NAME_KEY],
                                 export.read_encoded_images(fn_args.eval_files, WARMUP_IMAGES))
    checkpoints.remove(backup)
