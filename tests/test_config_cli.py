"""Config presets and overrides, and the CLI's error handling."""
from __future__ import annotations

import dataclasses

import pytest

from pipeline import cli
from pipeline import config as config_lib
from pipeline.config import ConfigError


def test_default_preset_is_the_keras_io_recipe():
    cfg = config_lib.from_preset(config_lib.DEFAULT_PRESET, data_root="d")
    t = cfg.trainer
    assert config_lib.DEFAULT_PRESET == "keras_io"
    assert (t.epochs, t.batch_size, t.learning_rate, t.weight_decay) == (20, 256, 1e-3, 1e-4)
    assert (t.projection_dim, t.num_layers, t.num_heads, t.mlp_dim, t.patch_size) == (128, 4, 4, 256, 6)
    assert (t.token_learner, t.num_tokens, t.token_learner_layer) == ("v1", 4, 2)
    assert (t.image_size, t.resize_to, t.dropout, t.layer_norm_eps) == (48, 52, 0.1, 1e-6)


def test_overrides_reach_pipeline_and_trainer_fields():
    cfg = config_lib.from_preset("tiny", data_root="d")
    new = config_lib.apply_overrides(cfg, config_lib.parse_overrides(
        ["epochs=1", "accuracy_floor=0.3", "trainer.num_tokens=8", "enable_cache=false",
         "class_names=a,b,c,d,e,f,g,h,i,j"]))
    assert (new.trainer.epochs, new.trainer.num_tokens, new.accuracy_floor, new.enable_cache) == (1, 8, 0.3, False)
    assert new.class_names[0] == "a" and cfg.trainer.epochs == 2  # frozen: the original is unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.trainer.epochs = 3


@pytest.mark.parametrize("pairs, match", [
    (["epoch=1"], "epoch: unknown setting"),
    (["epochs=one"], "epochs: cannot read 'one' as int"),
    (["trainer.accuracy_floor=1"], "unknown trainer field"),
    (["accuracy_floor=2"], "accuracy_floor: expected 0..1"),
    (["model_name=../evil"], "model_name"),
    (["num_tokens"], "expected key=value"),
    (["token_learner=v7"], "token_learner"),
    (["precision=fp8"], r"precision: expected one of \('auto', 'float32', 'bfloat16', 'float16'\), got 'fp8'"),
    (["mixed_precision=true"], "mixed_precision: replaced by precision = auto | float32 | bfloat16 | float16"),
    (["trainer.mixed_precision=false"], "trainer.mixed_precision: replaced by precision"),
])
def test_bad_overrides_name_the_field(pairs, match):
    with pytest.raises(ConfigError, match=match):
        config_lib.apply_overrides(config_lib.from_preset("tiny", data_root="d"), config_lib.parse_overrides(pairs))


def test_precision_is_auto_in_every_preset_but_tiny_which_stays_float32():
    precisions = {preset: config_lib.from_preset(preset, data_root="d").trainer.precision
                  for preset in config_lib.PRESETS}
    assert precisions.pop("tiny") == "float32"
    assert precisions and set(precisions.values()) == {"auto"}
    cfg = config_lib.apply_overrides(config_lib.from_preset("keras_io", data_root="d"),
                                     {"precision": "float32"})
    assert cfg.trainer.precision == "float32"


@pytest.mark.parametrize("stored, precision", [(False, "float32"), (True, "auto")])
def test_configs_stored_with_mixed_precision_still_load(stored, precision):
    values = {**config_lib.from_preset("tiny", data_root="d").to_dict(), "data_root": "d"}
    del values["trainer"]["precision"]
    values["trainer"]["mixed_precision"] = stored
    assert config_lib.PipelineConfig.from_dict(values).trainer.precision == precision


def test_cli_reports_bad_input_in_one_line_and_writes_nothing(tmp_path, capsys):
    rc = cli.main(["run", "--data", str(tmp_path / "missing.tar.gz"), "--output", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokenlearner: error:") and "missing.tar.gz does not exist" in err
    assert len(err.splitlines()) == 1
    rc = cli.main(["run", "--data", "x", "--set", "epochs=zero", "--output", str(tmp_path / "out")])
    assert rc == 2 and "epochs: cannot read 'zero'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "data" in out and "run" in out
