"""The ``instrumentd`` subcommands, one module each.

Every module here has ``register(subparsers)``, which adds its parser and sets ``run`` as its
default, and ``run(args) -> int``, which turns the parsed flags into typed values, calls the
library (daemon, model, pipeline, training) and returns the exit code. Heavy libraries (torch,
zmq) are imported inside ``run`` so that ``--help`` stays fast.
"""
