"""Options several subcommands share: which settings preset, `--set` overrides, the Beam profile (and `run`'s
--epochs, listed among them)."""
from __future__ import annotations

import argparse

from pipeline import config as config_lib
from pipeline.config import beam


def add_settings_arguments(p: argparse.ArgumentParser, *, set_help: str, beam_profile: bool = True,
                           epochs: bool = False) -> None:
    """--preset, --epochs (with `epochs`), --beam-profile (unless `beam_profile` is False: the command runs no
    Beam) and --set (`set_help` says which fields matter to the command)."""
    p.add_argument("--preset", default=config_lib.DEFAULT_PRESET, choices=config_lib.PRESETS,
                   help=f"settings preset (default: {config_lib.DEFAULT_PRESET})")
    if epochs:
        p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    if beam_profile:
        p.add_argument("--beam-profile", default=None, choices=beam.PROFILES,
                       help="Beam runner of the data-heavy components (default: config's beam_profile, direct)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help)


def overrides_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The `--set` pairs, with --epochs and --beam-profile (where the command has them and they were given)."""
    overrides = config_lib.parse_overrides(args.set or [])
    if getattr(args, "epochs", None) is not None:
        overrides["epochs"] = str(args.epochs)
    if getattr(args, "beam_profile", None):
        overrides["beam_profile"] = args.beam_profile
    return overrides
