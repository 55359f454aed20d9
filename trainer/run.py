"""TFX Trainer entry point: build the TokenLearner ViT, fit it, keep the best epoch, export for serving."""
from __future__ import annotations

import json
import logging
import os

import tf_keras as keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from trainer import checkpoints, distribute, export, flops, inputs, recipe, vit
from trainer.config import TrainerConfig
from trainer.progress import ProgressLogger

# Module path TFX loads inside the Trainer executor (also inside the container image).
RUN_FN = "trainer.run.run_fn"

# Keys of the Trainer's custom_config.
TRAINER_CONFIG_KEY = "trainer_config"
CLASS_NAMES_KEY = "class_names"
BACKUP_DIR_KEY = "backup_dir"  # where epoch checkpoints outlive a killed run (trainer/checkpoints.py)
MODEL_NAME_KEY = "model_name"  # TF Serving model name, written into the warmup requests

WARMUP_IMAGES = 4  # real eval images replayed by TF Serving when it loads the model

log = logging.getLogger(__name__)


def compile_model(cfg: TrainerConfig, steps_per_epoch: int = 1) -> keras.Model:
    """The model of `cfg`, compiled with its recipe (trainer/recipe.py; schedules need `steps_per_epoch`)."""
    tf.keras.utils.set_random_seed(cfg.seed)
    model = vit.build_model(cfg)
    model.compile(
        optimizer=recipe.optimizer(cfg, steps_per_epoch),
        loss=recipe.loss(cfg),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                 keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy")])
    return model


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    cfg = TrainerConfig.from_dict(fn_args.custom_config[TRAINER_CONFIG_KEY])
    class_names = list(fn_args.custom_config[CLASS_NAMES_KEY])
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    num_train, num_eval = inputs.count_examples(fn_args.train_files), inputs.count_examples(fn_args.eval_files)
    train_ds = inputs.make_dataset(fn_args.train_files, tft_output, cfg, training=True, num_examples=num_train)
    eval_ds = inputs.make_dataset(fn_args.eval_files, tft_output, cfg, training=False, num_examples=num_eval)

    with distribute.training_scope(cfg):  # MirroredStrategy on >1 GPU; mixed_float16 on GPU if enabled
        model = compile_model(cfg, steps_per_epoch=-(-num_train // cfg.batch_size))
    log.info("model %s: %d parameters; %d training / %d validation examples; config %s", model.name,
             model.count_params(), num_train, num_eval, json.dumps(cfg.to_dict()))
    stats = flops.report(model, fn_args.model_run_dir)  # model_stats.json: parameters, GFLOPs (two conventions)
    backup = checkpoints.backup_dir(
        fn_args.custom_config.get(BACKUP_DIR_KEY) or os.path.join(fn_args.model_run_dir, "backup"),
        cfg.to_dict(), fn_args.train_files, fn_args.transform_output)
    callbacks = [
        keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
        *checkpoints.callbacks(backup),
        ProgressLogger(cfg.epochs, steps_per_epoch=-(-num_train // cfg.batch_size)),
    ]
    model.fit(train_ds, validation_data=eval_ds, epochs=cfg.epochs, callbacks=callbacks, verbose=2)
    checkpoints.finish(backup, model, fn_args.model_run_dir)
    export.export_serving_model(model, tft_output, cfg, class_names, fn_args.serving_model_dir)
    flops.write(stats, os.path.join(fn_args.serving_model_dir, "assets.extra"))
    export.write_warmup_requests(fn_args.serving_model_dir, fn_args.custom_config[MODEL_NAME_KEY],
                                 export.read_encoded_images(fn_args.eval_files, WARMUP_IMAGES))
    checkpoints.remove(backup)
