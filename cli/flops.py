"""`tokenlearner flops`: parameters and GFLOPs of the model a preset (plus --set overrides) trains.

The numbers come from trainer/flops.py, the same code the Trainer runs to write model_stats.json.
"""
from __future__ import annotations

import argparse
import json

from pipeline import config as config_lib
from cli import options
from trainer.exit_codes import EXIT_OK


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_settings_arguments(
        p, set_help="override a trainer field, e.g. --set token_learner=v1.1 --set num_tokens=8", beam_profile=False)
    p.add_argument("--json", action="store_true", help="print model_stats.json's content instead of a table")


def from_args(args) -> int:
    overrides = options.overrides_from_args(args)
    config = config_lib.apply_overrides(config_lib.from_preset(args.preset, data_root="-"), overrides)
    from trainer import flops, vit  # TensorFlow only once the settings are valid

    stats = flops.model_stats(vit.build_model(config.trainer))
    print(json.dumps(stats.to_dict(), indent=2) if args.json else flops.render(stats))
    return EXIT_OK
