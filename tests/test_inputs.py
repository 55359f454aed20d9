"""The Trainer's input pipelines (trainer/inputs.py): what one epoch of the training input is."""
from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest
import tensorflow_transform as tft

from trainer import inputs
from trainer.config import PRESETS


def _input(exported_model, batch_size: int, training: bool, repeat: bool = False):
    cfg = dataclasses.replace(PRESETS["tiny"], batch_size=batch_size)
    tft_output = tft.TFTransformOutput(exported_model.transform_dir)
    return cfg, inputs.make_dataset([exported_model.data_pattern], tft_output, cfg, training=training,
                                    num_examples=64, repeat=repeat)


def test_each_epoch_of_the_repeated_training_input_is_one_whole_pass_in_a_new_order(exported_model):
    _, once = _input(exported_model, batch_size=64, training=False)
    labels = collections.Counter(np.concatenate([y.numpy().reshape(-1) for _, y in once]).tolist())
    cfg, endless = _input(exported_model, batch_size=24, training=True, repeat=True)
    steps = inputs.epoch_steps(64, cfg)
    batches = iter(endless)
    epochs = [[next(batches)[1].numpy().reshape(-1) for _ in range(steps)] for _ in range(3)]

    assert steps == 3
    for epoch in epochs:
        assert [len(batch) for batch in epoch] == [24, 24, 16]  # the partial batch closes its own epoch
        assert collections.Counter(np.concatenate(epoch).tolist()) == labels  # every example once
    assert len({tuple(np.concatenate(epoch)) for epoch in epochs}) == 3  # reshuffled each pass


def test_only_the_training_input_repeats(exported_model):
    with pytest.raises(ValueError, match="repeat: only the training input"):
        _input(exported_model, batch_size=24, training=False, repeat=True)
