"""Exit codes of `tokenlearner` and `python -m trainer.worker`, for scripts: each value is named once, here (README's
CLI section lists them). They sit at the bottom of the layers, without imports, so the CLI, the serving client, batch
inference and the worker use them without importing each other.

Shared by every subcommand:
  0    EXIT_OK           done (`run`: a model was pushed; `predict`: every file was classified)
  2    EXIT_USAGE        bad arguments, input or settings, named in one line; nothing was run (`predict` also: no
                         SavedModel at --model, or the server does not know the model, version or label; `infer`
                         also: no SavedModel at --model, no images at --data, --out not empty)
  130  EXIT_INTERRUPTED  Ctrl-C

Exit 1 and 3 mean different things for `run` and for `predict`, so each meaning has its own name:
  1    EXIT_PIPELINE_FAILED  `run`: a pipeline component failed (bad data included; drift between spans: 4)
  1    EXIT_SOME_FAILED      `predict`: some files or folders failed (each reported); the others were classified;
                             `infer`: some images are in the errors output (errors-*.jsonl, each with its reason)
  3    EXIT_NOT_PUSHED       `run`: the run finished but the Evaluator did not bless the model, so it was not pushed
  3    EXIT_UNREACHABLE      `predict`: the server could not be reached, or kept failing, after the retries
  3    EXIT_JOB_FAILED       `infer`: the Beam job failed (runner or worker error); the outputs are incomplete
  3    EXIT_SUBMIT_FAILED    `submit`: nothing was submitted: no credentials, the server could not be reached, or it
                             answered with an HTTP error (one line names the host or project and the status; the
                             compiled spec is kept, its path in that line)
  1    EXIT_TRAINING_FAILED  `train-worker` and `python -m trainer.worker`: training failed; a peer that stopped
                             answering is one line on stderr naming it (`... worker 1 of 2 (host:port) stopped
                             answering: ...`)

Only `run`:
  4    EXIT_DRIFT            stopped before anything trained: the newest span of the training window differs from the
                             one before it beyond span_label_drift / span_image_drift (one line names both spans, the
                             feature and its distance; `--set accept_drift=true` trains on it anyway)

Only `train-worker` and `python -m trainer.worker` (trainer/worker.py):
  5    EXIT_PEER_TIMEOUT     the other workers TF_CONFIG names did not all connect within --peer-timeout seconds (one
                             line names them); nothing was trained
  143  EXIT_TERMINATED       stopped by SIGTERM (128 + 15, as a shell reports it); the training process was ended
"""
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

EXIT_PIPELINE_FAILED = 1
EXIT_NOT_PUSHED = 3
EXIT_DRIFT = 4

EXIT_SOME_FAILED = 1
EXIT_UNREACHABLE = 3
EXIT_JOB_FAILED = 3
EXIT_SUBMIT_FAILED = 3
EXIT_TRAINING_FAILED = 1
EXIT_PEER_TIMEOUT = 5
EXIT_TERMINATED = 143
