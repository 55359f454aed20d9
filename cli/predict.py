"""Arguments and entry point of `tokenlearner predict` (the client itself is serving_client/predict.py; its module
docstring, with the exit codes, is the subcommand's --help description)."""
from __future__ import annotations

import argparse
import sys

from serving_client import predict
from serving_client.predict import DEFAULT_MODEL_NAME, PredictError, PredictSettings

DESCRIPTION = predict.__doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files (sent whatever their name), or folders searched recursively for the image "
                        "suffixes ingestion and `infer` take (.png .jpg .jpeg .bmp .gif .webp .tif ...)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", metavar="DIR",
                        help="load the SavedModel here: a version folder, or the model base folder "
                             "(<output>/serving/<model_name>; its highest version is used)")
    target.add_argument("--rest", metavar="URL", help="TF Serving REST API, e.g. http://localhost:8501")
    target.add_argument("--grpc", metavar="HOST:PORT", help="TF Serving gRPC API, e.g. localhost:8500")
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME,
                   help=f"model name on the server (default: {DEFAULT_MODEL_NAME})")
    selector = p.add_mutually_exclusive_group()
    selector.add_argument("--version", type=int, help="model version (default: the server's latest)")
    selector.add_argument("--label", help="version label on the server, e.g. stable or canary")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default: 3)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text lines")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="per request, network only (default: 10)")
    p.add_argument("--retries", type=int, default=3,
                   help="retries of a request when the server is unreachable or busy, with exponential backoff "
                        "from 0.5 s (default: 3)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="images per request (default: 16); a TF Serving with batching refuses more than its "
                        "max_batch_size, which no API reports: the client then warns and uses that limit")
    tls = p.add_argument_group("TLS (REST: an https:// URL; gRPC: --tls or --ca-cert)")
    tls.add_argument("--tls", action="store_true", help="gRPC over TLS, server verified against the system CAs")
    tls.add_argument("--ca-cert", metavar="PEM", help="CA bundle that signs the server's certificate (implies TLS)")
    tls.add_argument("--client-cert", metavar="PEM", help="client certificate, for servers requiring mutual TLS")
    tls.add_argument("--client-key", metavar="PEM", help="private key of --client-cert")


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point of the CLI subcommand: settings errors are usage errors (exit 2)."""
    try:
        settings = settings_from_args(args)
    except PredictError as e:
        print(f"tokenlearner: error: {e}", file=sys.stderr)
        return e.exit_code
    return predict.run(settings)


def settings_from_args(args: argparse.Namespace) -> PredictSettings:
    return PredictSettings(paths=tuple(args.paths), model_dir=args.model, rest_url=args.rest,
                           grpc_target=args.grpc, model_name=args.model_name, version=args.version,
                           label=args.label, top_k=args.top_k, as_json=args.json, timeout_s=args.timeout,
                           retries=args.retries, batch_size=args.batch_size, tls=args.tls, ca_cert=args.ca_cert,
                           client_cert=args.client_cert, client_key=args.client_key)
