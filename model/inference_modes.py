"""The names of the network paths a worker can run (model/fast.py builds them), kept apart from torch so
that a daemon's configuration is checked before anything heavy loads."""

MODES = ("auto", "eager", "fp16", "fp16-tail", "bf16", "channels_last", "graphs", "graphs-fp32", "compile",
         "compile-fp16-tail", "compile-fp32")
