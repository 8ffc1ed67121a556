"""Presets, YAML config files and flag overrides, merged into one run config (every key is recorded in results)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path

from .errors import DilmbenchError
from .registry import suggest

from .models import QUICK_MODEL as MINILM


PRESETS: dict[str, dict] = {
    "paper": {
        "description": "DiLM's protocol at full scale: bert-base-uncased encoder; BERT/RoBERTa/XLNet learners; 20 sets x 5 inits",
        "tasks": ["sst2"], "methods": ["random", "kcenters", "herding"], "dpc": [5, 10, 20],
        "sets": 20, "inits": 5, "encoder": "bert-base-uncased", "pooling": "cls", "embed_dtype": "float32",
        "evaluator": "finetune",
        "evaluator_options": {},  # each evaluator's own values for a preset live with it (its `presets`)
        "method_options": {}, "data_source": None, "dev_size": 2000, "dev_seed": 0, "seed": 0, "device": "auto",
        "score_split": "eval",
    },
    "quick": {
        "description": "CPU-sized: all-MiniLM-L6-v2 (mean pooling) as encoder and learner, embedded SST-2, DPC 5, 1 set x 1 init",
        "tasks": ["sst2"], "methods": ["random", "kcenters", "herding"], "dpc": [5],
        "sets": 1, "inits": 1, "encoder": MINILM, "pooling": "mean",
        # the pool's embedding pass under bf16 autocast, ~3x faster here (dilmbench.embed); results made before the
        # option existed were float32, and their grid.yaml entries say so
        "embed_dtype": "bfloat16",
        "evaluator": "finetune",
        "evaluator_options": {},
        "method_options": {}, "data_source": "embedded", "dev_size": 2000, "dev_seed": 0, "seed": 0, "device": "auto",
        "score_split": "eval",
    },
}

KNOWN_KEYS = set(PRESETS["paper"])


class Overwrite(str, Enum):
    """What `run` does with results already in --out (the runner's REDO says which statuses each mode reruns)."""

    ONLY_MISSING = "only-missing"  # skip finished runs, redo truncated ones; stop at one made another way
    CHANGED = "changed"  # also replace results made under another configuration, data or model snapshot
    ALWAYS = "always"  # redo every run
    NEVER = "never"  # touch no existing result


@dataclass(frozen=True)
class RunOptions:
    """The options of `dilmbench run` that shape a grid, as typed (None: not given, the preset or file decides).
    The CLI, `validate --expect` and scripts build a run config from it (``config()``), so no caller repeats the
    option list; a grid declaration refuses any of them on the command line (``given()``)."""

    preset: str | None = None
    config_file: str | None = None
    tasks: str | None = None
    methods: str | None = None
    dpc: str | None = None
    sets: int | None = None
    inits: int | None = None
    learners: str | None = None
    steps: int | None = None
    evaluator: str | None = None
    encoder: str | None = None
    pooling: str | None = None
    embed_dtype: str | None = None
    data_dir: str | None = None
    data_source: str | None = None
    dev_size: int | None = None
    seed: int | None = None
    device: str | None = None
    score_split: str | None = None

    # how each shaping option is written on the command line (for messages)
    FLAGS = {"preset": "--preset", "tasks": "--task", "methods": "--methods", "dpc": "--dpc", "sets": "--sets",
             "inits": "--inits", "learners": "--learners", "steps": "--steps", "evaluator": "--evaluator",
             "encoder": "--encoder", "pooling": "--pooling", "embed_dtype": "--embed-dtype", "dev_size": "--dev-size", "seed": "--seed",
             "score_split": "--score-on"}

    @classmethod
    def from_params(cls, params: dict) -> "RunOptions":
        """From a click context's params (or any mapping holding some of the fields; others are ignored)."""
        return cls(**{f.name: params.get(f.name) for f in fields(cls)})

    def given(self) -> list[str]:
        """The grid-shaping options given, as their flags (data location and device do not shape a grid)."""
        return [flag for name, flag in self.FLAGS.items() if getattr(self, name) is not None]

    def config(self) -> dict:
        """preset, then --config's YAML, then $DILMBENCH_DATA_DIR, then these flags -> the run config."""
        def csv(value):
            return [v.strip() for v in value.split(",") if v.strip()] if value else None

        overrides = {"tasks": csv(self.tasks), "methods": csv(self.methods), "dpc": csv(self.dpc), "sets": self.sets,
                     "inits": self.inits, "evaluator": self.evaluator, "encoder": self.encoder,
                     "pooling": self.pooling, "embed_dtype": self.embed_dtype, "data_source": self.data_dir or self.data_source,
                     "dev_size": self.dev_size, "seed": self.seed, "device": self.device,
                     "score_split": self.score_split}
        return set_evaluator_options(build_config(self.preset, self.config_file, overrides),
                                     learners=csv(self.learners), steps=self.steps)


def build_evaluator(cfg: dict):
    """The config's evaluator with its preset's values and the config's options: the one way it is built (runner,
    `validate --expect`, workers)."""
    from .registry import EVALUATORS

    return EVALUATORS.get(cfg["evaluator"]).for_preset(cfg.get("preset"), **evaluator_options(cfg))


def load_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DilmbenchError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DilmbenchError(f"config file '{path}' is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise DilmbenchError(f"config file '{path}' must hold a mapping of option: value")
    return data


# the README's option names, as a YAML file may write them -> config keys ("learners" and "steps" go to the evaluator)
YAML_ALIASES = {"task": "tasks", "data_dir": "data_source", "data-dir": "data_source", "score_on": "score_split",
                "score-on": "score_split", "dev-size": "dev_size", "data-source": "data_source"}
EVALUATOR_KEYS = ("learners", "steps")


def build_config(preset: str | None = "paper", yaml_path: str | None = None, overrides: dict | None = None,
                 file_cfg: dict | None = None) -> dict:
    """preset, then YAML (which may name its own preset), then $DILMBENCH_DATA_DIR (over the preset's data source,
    not over a file's or a flag's), then flags; unknown keys are errors. ``file_cfg``: the YAML's mapping, already
    read (a grid declaration's entry)."""
    import os

    if file_cfg is None:
        file_cfg = load_yaml(yaml_path) if yaml_path else {}
    file_cfg = {YAML_ALIASES.get(k, k): v for k, v in file_cfg.items()}
    evaluator_flags = {k: file_cfg.pop(k) for k in EVALUATOR_KEYS if k in file_cfg}
    if isinstance(evaluator_flags.get("learners"), str):
        evaluator_flags["learners"] = [s for s in evaluator_flags["learners"].split(",") if s]
    env_data = os.environ.get("DILMBENCH_DATA_DIR")
    if env_data and file_cfg.get("data_source") is None and (overrides or {}).get("data_source") is None:
        file_cfg["data_source"] = env_data
    preset = file_cfg.pop("preset", None) if preset is None else preset
    preset = preset or "paper"
    if preset not in PRESETS:
        raise DilmbenchError(f"unknown preset '{preset}'{suggest(preset, PRESETS)}; known: {', '.join(PRESETS)}")
    cfg = copy.deepcopy(PRESETS[preset])
    cfg["preset"] = preset
    for source, layer in (("config file", file_cfg), ("flags", overrides or {})):
        for key, value in layer.items():
            if value is None:
                continue
            if key not in KNOWN_KEYS and key != "preset":
                raise DilmbenchError(f"unknown config key '{key}' in {source}{suggest(key, KNOWN_KEYS)}")
            if key in ("evaluator_options", "method_options") and isinstance(value, dict):
                merged = copy.deepcopy(cfg.get(key, {}))
                for k, v in value.items():
                    merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
                cfg[key] = merged
            else:
                cfg[key] = value
    if evaluator_flags:
        return set_evaluator_options(cfg, **evaluator_flags)
    return validate_config(cfg)


def evaluator_options(cfg: dict) -> dict:
    """The options of the config's evaluator (``evaluator_options`` is keyed by evaluator name)."""
    return dict(cfg.get("evaluator_options", {}).get(cfg["evaluator"], {}))


def set_evaluator_options(cfg: dict, **opts) -> dict:
    """Flag overrides (--learners, --steps) for whichever evaluator the config ends up naming."""
    opts = {k: v for k, v in opts.items() if v is not None}
    if opts:
        block = cfg.setdefault("evaluator_options", {})
        block[cfg["evaluator"]] = {**block.get(cfg["evaluator"], {}), **opts}
    return validate_config(cfg)


def _int_list(value, what: str) -> list[int]:
    if isinstance(value, (int, str)):
        value = [value]
    try:
        out = [int(v) for v in value]
    except (TypeError, ValueError):
        raise DilmbenchError(f"{what} must be whole numbers, got {value!r}") from None
    if not out or any(v < 1 for v in out):
        raise DilmbenchError(f"{what} must be positive whole numbers, got {value!r}")
    return out


def validate_config(cfg: dict) -> dict:
    cfg["dpc"] = _int_list(cfg["dpc"], "dpc")
    cfg["sets"] = _int_list(cfg["sets"], "sets")[0]
    cfg["inits"] = _int_list(cfg["inits"], "inits")[0]
    for key in ("tasks", "methods"):
        if isinstance(cfg[key], str):
            cfg[key] = [s for s in cfg[key].split(",") if s]
        if not isinstance(cfg[key], list) or not all(isinstance(v, str) for v in cfg[key]):
            raise DilmbenchError(f"{key} must be a list of names or a comma-separated string, got {cfg[key]!r}")
        if not cfg[key]:
            raise DilmbenchError(f"no {key} given")
        dupes = sorted({v for v in cfg[key] if cfg[key].count(v) > 1})
        if dupes:
            raise DilmbenchError(f"{key} name(s) {dupes} given more than once")
    for key in ("evaluator_options", "method_options"):
        if not isinstance(cfg.get(key, {}), dict) or not all(isinstance(v, dict) for v in cfg.get(key, {}).values()):
            raise DilmbenchError(f"{key} must map a name to its options, e.g. {{finetune: {{steps: 200}}}}; "
                                 f"got {cfg.get(key)!r}")
    steps = cfg.get("evaluator_options", {}).get(cfg.get("evaluator"), {}).get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise DilmbenchError(f"steps must be a positive whole number, got {steps!r}")
    if cfg["pooling"] not in ("cls", "mean"):
        raise DilmbenchError(f"pooling must be 'cls' or 'mean', got '{cfg['pooling']}'")
    if cfg.get("embed_dtype", "float32") not in ("float32", "bfloat16"):
        raise DilmbenchError(f"embed_dtype must be 'float32' or 'bfloat16', got '{cfg['embed_dtype']}'")
    if cfg.get("score_split", "eval") not in ("eval", "dev"):
        raise DilmbenchError(f"score_split must be 'eval' (the task's evaluation split) or 'dev' (carved from train), "
                             f"got '{cfg['score_split']}'")
    return cfg


def embed_identity(cfg: dict) -> dict:
    """What the encoder pass's precision adds to a set's identity: nothing at float32 (every result made before the
    option existed), else its dtype."""
    dtype = cfg.get("embed_dtype", "float32")
    return {} if dtype == "float32" else {"dtype": dtype}
