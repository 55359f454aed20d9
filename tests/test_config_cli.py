"""Config presets and overrides, and the CLI's error handling."""
from __future__ import annotations

import dataclasses
import json
import re

import pytest

import cli
from pipeline import config as config_lib
from pipeline.config import ConfigError
from trainer.features import CIFAR10_CLASSES


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
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "usage: tokenlearner [-h] [-q | -v]"
    listed = re.search(r"^\s+\{([a-z,-]+)\}$", out, flags=re.M)
    assert listed, out
    assert set(listed.group(1).split(",")) == {"data", "run", "predict", "infer", "compile", "submit", "flops", "report",
                                               "history", "tensorboard", "spans", "train-worker"}, listed.group(1)


# ---- settings the dataset decides (issue 25): input size, class list, blessing floor, label drift --------------

def test_every_preset_keeps_cifar10s_input_size_floor_and_top5():
    for preset in config_lib.PRESETS:
        cfg = config_lib.from_preset(preset, data_root="d")
        size = 16 if preset == "small_images" else 32  # the one preset made for small images
        assert (cfg.trainer.input_size, cfg.trainer.num_classes, cfg.trainer.top_k) == (size, 10, 5), preset
        assert cfg.class_names == CIFAR10_CLASSES and cfg.label_drift_threshold == 0.05
        assert cfg.blessing_floor == (0.0 if preset == "tiny" else 0.5), preset  # exactly, as before


@pytest.mark.parametrize("pairs, match", [
    (["input_size=4"], r"input_size: expected 8\.\.1024 pixels .*got 4"),
    (["input_size=2048"], "input_size: expected 8..1024"),
    (["input_size=big"], "input_size: cannot read 'big' as int"),
    (["image_size=50"], r"image_size: expected a multiple of patch_size \(6\), got 50"),
    (["image_size=60"], r"image_size: expected at most resize_to \(52\)"),
    (["patch_size=0"], "patch_size: expected a positive integer, got 0"),
    (["image_size=32", "resize_to=32", "conv_tokenizer_stages=6"], "conv_tokenizer_stages: 6 stages"),
    (["num_classes=1", "class_names=a"], "num_classes: expected at least 2 classes, got 1"),
    (["accuracy_floor=-0.1"], r"accuracy_floor: expected 0\.\.1 or auto, got -0\.1"),
    (["accuracy_floor=half"], "accuracy_floor: cannot read 'half' as float"),
    (["label_drift_threshold=1.5"], r"label_drift_threshold: expected 0\.\.1 .*got 1\.5"),
    (["label_drift_threshold=none"], "label_drift_threshold: cannot read 'none' as float"),
])
def test_bad_sizes_floors_and_thresholds_name_the_field(pairs, match):
    with pytest.raises(ConfigError, match=match):
        config_lib.apply_overrides(config_lib.from_preset("keras_io", data_root="d"),
                                   config_lib.parse_overrides(pairs))


def test_input_size_floor_and_drift_threshold_are_settings():
    cfg = config_lib.apply_overrides(config_lib.from_preset("tiny", data_root="d"), config_lib.parse_overrides(
        ["input_size=64", "accuracy_floor=auto", "label_drift_threshold=0.2"]))
    assert (cfg.trainer.input_size, cfg.accuracy_floor, cfg.label_drift_threshold) == (64, None, 0.2)
    assert cfg.blessing_floor == 0.5  # auto: 4/9 of the way from chance (0.1) to 1
    cfg = config_lib.apply_overrides(cfg, {"accuracy_floor": "0.7"})
    assert cfg.accuracy_floor == cfg.blessing_floor == 0.7


def _three_classes(manifest_extra=None) -> dict:
    return {"class_names": ["cat", "dog", "fox"], "num_classes": 3, **(manifest_extra or {})}


def test_for_dataset_takes_class_list_head_size_and_schema_from_the_manifest():
    base = config_lib.from_preset("keras_io", data_root="/data/images-folder-abc-all/")
    cfg = config_lib.for_dataset(base, _three_classes())
    assert cfg.class_names == ("cat", "dog", "fox") and cfg.trainer.num_classes == 3
    assert cfg.schema_path == "/data/images-folder-abc-all/schema.pbtxt"
    assert cfg.trainer.top_k == 2 and cfg.trainer.top_k_metric == "top2_accuracy"
    assert cfg.blessing_floor == pytest.approx(1 / 3 + (2 / 3) * 4 / 9)  # 0.63: as far above chance as 0.5 of 10
    assert cfg.trainer.input_size == base.trainer.input_size  # the size is a setting, not the data's
    # A schema set explicitly stays (the inferred one, or the user's own file).
    inferred = config_lib.apply_overrides(base, {"schema_path": "infer"})
    assert config_lib.for_dataset(inferred, _three_classes()).schema_path == "infer"


def test_for_dataset_leaves_a_cifar10_config_unchanged():
    base = config_lib.from_preset("better", data_root="d")
    manifest = {"source": "cifar-10-python.tar.gz", "format": "official", "class_names": list(CIFAR10_CLASSES),
                "num_classes": 10}
    assert config_lib.for_dataset(base, manifest) == base
    assert config_lib.for_dataset(base, {"class_names": list(CIFAR10_CLASSES)}) == base  # manifests before issue 25


@pytest.mark.parametrize("manifest, match", [
    ({"class_names": ["only"]}, "class_names: expected the dataset manifest's list of at least 2"),
    ({}, "class_names: expected the dataset manifest's list"),
    ({"class_names": ["a", ""]}, "class_names: expected"),
    (_three_classes({"num_classes": 4}), "num_classes: the dataset manifest says 4 but lists 3"),
])
def test_for_dataset_refuses_a_bad_manifest(manifest, match):
    with pytest.raises(ConfigError, match=match):
        config_lib.for_dataset(config_lib.from_preset("tiny", data_root="d"), manifest)


def test_class_names_set_against_the_data_are_refused():
    renamed = config_lib.apply_overrides(config_lib.from_preset("tiny", data_root="d"),
                                         {"class_names": ",".join(f"c{i}" for i in range(10))})
    with pytest.raises(ConfigError, match=r"class_names: set to \['c0'.*but the dataset's are \['cat', 'dog', 'fox'\]"):
        config_lib.for_dataset(renamed, _three_classes())


def test_configs_saved_before_issue_25_still_load():
    """No input_size, no label_drift_threshold, accuracy_floor a number: the settings those runs had."""
    values = config_lib.from_preset("keras_io", data_root="d").to_dict()
    del values["label_drift_threshold"]
    del values["trainer"]["input_size"]
    values["accuracy_floor"] = 0.5
    old = config_lib.PipelineConfig.from_dict(json.loads(json.dumps(values)))
    assert (old.trainer.input_size, old.label_drift_threshold, old.blessing_floor) == (32, 0.05, 0.5)
    saved = config_lib.for_dataset(config_lib.from_preset("tiny", data_root="d"), _three_classes())
    assert config_lib.PipelineConfig.from_dict(json.loads(json.dumps(saved.to_dict()))) == saved


def test_compile_takes_the_class_list_from_a_readable_manifest(tmp_path):
    from cli import app, remote

    def build(data_root):
        args = app.build_parser().parse_args(["compile", "--target", "kubeflow", "--image", "img:1", "--data-root",
                                              str(data_root), "--output", "gs://b/o", "--preset", "tiny"])
        return remote.build_config(args)

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "manifest.json").write_text(json.dumps(_three_classes()))
    cfg = build(tmp_path / "images")
    assert cfg.class_names == ("cat", "dog", "fox") and cfg.trainer.num_classes == 3
    assert cfg.schema_path == f"{tmp_path / 'images'}/schema.pbtxt"
    # No manifest and no class list given: refused, not compiled with CIFAR-10's (tests/test_remote_failures.py);
    # a local folder is refused as such first.
    with pytest.raises(ConfigError, match="data_root: .* is on this machine"):
        build(tmp_path / "absent")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match="manifest.json: not a dataset manifest"):
        build(tmp_path / "broken")
