"""dilmbench: a benchmark for text dataset distillation and coreset selection.

The core (this package) holds tasks, text sets, the shared fine-tuning recipe, the encoder
embedding pass, the registry, the runner, the results store and the tables. Methods live in
``dilmbench.methods`` and evaluators in ``dilmbench.evaluators``; the core never imports them
directly and finds them through :mod:`dilmbench.registry`.
"""

__version__ = "0.1.0"
