"""``RecipeParser``: TRL's ``TrlParser`` with the recipe's values checked against the fields they set.

TrlParser puts a YAML value into the parser's defaults as it is, so argparse never sees it as typed text:
``train_data: a.jsonl`` reached the code as a string (and was read one character at a time), ``max_steps: 1.5``
failed deep inside transformers, and ``learning_rate: fast`` printed a 250-line usage text that did not name the
file. Here every recipe value is checked against its field's type first, and refused with
``RECIPE: FIELD: expected …, got …``:

* a single value for a list field becomes a one-element list (``reward_funcs: iou_acc``);
* an integer field takes an integer (``800`` or ``800.0``; not ``1.5``, not ``true``);
* a float field takes a number, or text that reads as one (YAML reads ``1e-5`` as text);
* a bool field takes ``true`` / ``false`` (or text argparse reads as a bool);
* a text field takes text (``output_dir: 2024`` must be quoted);
* a key given twice in the recipe is refused with its line (YAML would keep the last one silently).

Text values of other fields, and everything given on the command line, go through argparse as before. A
recipe's ``env:`` mapping is TRL's: its entries are exported to the environment. A key that is no option is refused
naming the recipe (and the closest option). transformers' refusal of bf16 on a machine without a GPU is reworded to
say which flags train on the CPU.

The run's length is set by ``max_steps`` or by ``num_train_epochs``, never both: the command line overrides the
recipe here too (``--max_steps 50`` on a recipe with ``num_train_epochs: 2`` runs 50 steps, and the reverse), and
both given in one place are refused.

The parser remembers what the command line gave and what the recipe held (``command_line_options``,
``recipe_values``) for checks that depend on where a value came from (``vlm_r1.config.check_recipe_overrides``).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import sys
from contextlib import contextmanager
import types
import typing
from typing import Any

import yaml
from trl import TrlParser

logger = logging.getLogger("vlm_r1")


def only_apply(names) -> str:
    """``"a, b only apply"`` or ``"a only applies"``: the start of a refusal of options the run would not read."""
    names = list(names)
    return f"{', '.join(names)} only {'applies' if len(names) == 1 else 'apply'}"


class OptionError(ValueError):
    """An option (a flag or a recipe value) that cannot be honoured: the ``vlm-r1`` command prints the message alone
    (no traceback) and exits with status 2."""


def check_output_dir(path, option: str = "output_dir") -> None:
    """:class:`OptionError` unless ``path`` is a folder, or can become one, that this process may write in: found
    before anything is loaded, not when the first file is written after a long evaluation or training. Tried by
    writing a temporary file in the folder, or in its nearest existing parent; nothing is left behind."""
    import tempfile
    from pathlib import Path

    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OptionError(f"--{option} {path}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise OptionError(f"--{option} {path}: cannot write in {existing} ({e.strerror or e})") from e


@contextmanager
def refusing_options():
    """Around parsing and checking a command's options: any ValueError raised there becomes an :class:`OptionError`."""
    try:
        yield
    except OptionError:
        raise
    except ValueError as e:
        raise OptionError(str(e)) from e


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key repeated in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ValueError(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice "
                                 f"(first on line {seen[key]}); keep one")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _field_hints(dataclass_types) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for cls in dataclass_types:
        try:
            resolved = typing.get_type_hints(cls)
        except Exception:  # an unresolvable annotation somewhere in a library's class: use what is concrete
            resolved = {f.name: f.type for f in dataclasses.fields(cls) if not isinstance(f.type, str)}
        for f in dataclasses.fields(cls):
            if f.name in resolved:
                hints[f.name] = resolved[f.name]
    return hints


def _members(hint) -> tuple[set, Any]:
    """(the plain types a hint admits, the element hint of its list member or None)."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    plain, element = set(), None
    for arg in args:
        if typing.get_origin(arg) is list:
            element = (typing.get_args(arg) or (Any,))[0]
        elif typing.get_origin(arg) is dict:
            plain.add(dict)
        elif isinstance(arg, type):
            plain.add(arg)
    return plain, element


def _scalar(value, plain: set, where: str):
    """`value` checked (and converted where exact) for a field admitting the types in `plain` (none known: any)."""
    if not plain or Any in plain or str in plain and isinstance(value, str):
        return value
    if value is None:
        if type(None) in plain:
            return value
        raise ValueError(f"{where}: null is not a value this option takes; leave the key out for its default")
    if isinstance(value, (list, dict)):
        if type(value) in plain:
            return value
        raise ValueError(f"{where}: expected one value, got a {'list' if isinstance(value, list) else 'mapping'} "
                         f"{value!r:.80}")
    if bool in plain:
        if isinstance(value, bool) or isinstance(value, str):
            return value  # text goes to argparse's string_to_bool
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    if int in plain and float not in plain:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected an integer, got {value!r}") from None
    if float in plain:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if plain and plain <= {str, type(None)}:
        raise ValueError(f"{where}: expected text, got {value!r} (quote it)")
    return value


def check_recipe_value(name: str, value, hint, recipe: str):
    """A recipe's value for field `name`, checked against the field's type hint; ValueError naming both."""
    where = f"{recipe}: {name}"
    plain, element = _members(hint)
    if element is not None and value is not None and not isinstance(value, list) and type(value) not in plain:
        value = [value]
    if isinstance(value, list) and element is not None:
        inner, _ = _members(element)
        return [_scalar(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    return _scalar(value, plain | ({list} if element is not None else set()), where)


GONE_OPTIONS = {  # options of older transformers / TRL that users still write
    "warmup_ratio": "warmup_steps: a value below 1 is a fraction of the run, e.g. 0.1",
    "max_prompt_length": "nothing: TRL 1.x does not cut prompts; shorten the questions or the system prompt",
    "evaluation_strategy": "eval_strategy",
}


def _with_suggestion(name: str, options: list[str]) -> str:
    """``name`` with what to use instead: the option that replaced it, or the closest spelling."""
    if name.replace("-", "_") in GONE_OPTIONS:
        return f"{name} (gone; use {GONE_OPTIONS[name.replace('-', '_')]})"
    close = difflib.get_close_matches(name, options, 1)
    return f"{name} (did you mean {close[0]}?)" if close else name


class RecipeParser(TrlParser):
    """TrlParser whose ``--config`` recipe is read strictly (see the module docstring)."""

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # "--max_step 5" is an error, not a guess
        super().__init__(dataclass_types, **kwargs)
        self._hints = _field_hints(dataclass_types if isinstance(dataclass_types, (list, tuple)) else [dataclass_types])
        self._recipe, self._recipe_values, self._command_line = "the recipe", {}, set()

    def parse_args_and_config(self, args=None, **kwargs):
        args = list(args) if args is not None else sys.argv[1:]
        if "--config" in args and args.index("--config") + 1 < len(args):
            self._recipe = args[args.index("--config") + 1]
            try:
                with open(self._recipe, encoding="utf-8") as f:
                    loader = _UniqueKeyLoader(f)  # a SafeLoader: plain data only
                    try:
                        recipe = loader.get_single_data()
                    finally:
                        loader.dispose()
                self._recipe_values = recipe if isinstance(recipe, dict) else {}
            except (ValueError, yaml.YAMLError) as e:
                raise ValueError(f"{self._recipe}: {e}") from None
        self._refuse_unknown_flags(args)
        try:
            parsed = super().parse_args_and_config(args, **kwargs)
        except ValueError as e:
            if "support bf16" not in str(e):
                raise
            source = f"`bf16: true` in {self._recipe}" if "bf16" in self._recipe_values else "bf16 is true by default"
            raise ValueError(f"{source}, and this machine has no GPU that supports bf16: add --bf16 false "
                             "--use_cpu true to train on the CPU") from None
        given = (self._option_string_actions.get(a.partition("=")[0]) for a in args if a.startswith("--"))
        command_line = {action.dest for action in given if action is not None}  # "--max-steps" is max_steps too
        for obj in parsed:
            if dataclasses.is_dataclass(obj) and hasattr(obj, "max_steps") and hasattr(obj, "num_train_epochs"):
                self._settle_run_length(obj, command_line)
        self._command_line = command_line
        return parsed

    @property
    def command_line_options(self) -> set[str]:
        """The options the last parsed command line gave (by field name; after :meth:`parse_args_and_config`)."""
        return set(self._command_line)

    @property
    def recipe_values(self) -> tuple[str, dict]:
        """``(recipe path, its key -> value mapping as YAML read it)`` of the last parse (``("the recipe", {})``
        without ``--config``)."""
        return self._recipe, dict(self._recipe_values)

    def _refuse_unknown_flags(self, args: list[str]) -> None:
        """A misspelt flag gets the same "did you mean" as a misspelt recipe key (HfArgumentParser only lists it). An
        option given twice keeps its last value, as argparse does (a wrapper script's default, then its caller's
        override), with a warning: argparse dropped the first silently (`--data a --data b` evaluated b alone)."""
        unknown = [a.partition("=")[0] for a in args if a.startswith("--") and a not in ("--", "--config")
                   and " " not in a and a.partition("=")[0] not in self._option_string_actions]  # a space: a value
        if unknown:
            options = [a.dest for a in self._actions]
            raise ValueError(f"{', '.join(_with_suggestion(flag[2:], options) for flag in unknown)}: no such option "
                             f"of {self.prog} (see {self.prog} --help)")
        seen: dict[str, str] = {}
        for arg in args:
            action = self._option_string_actions.get(arg.partition("=")[0]) if arg.startswith("--") else None
            if action is None or arg == "--config":
                continue
            flag = arg.partition("=")[0]
            if action.dest in seen:  # a wrapper script's default, then its caller's override: the last one wins
                several = (f" (several values go after one flag: --{action.dest} A B)" if action.nargs in ("+", "*")
                           else "")
                logger.warning("--%s is given twice (%s, then %s): the last value is used%s", action.dest,
                               seen[action.dest], flag, several)
            seen[action.dest] = flag

    def _settle_run_length(self, training_args, command_line: set[str]) -> None:
        """Keep the one of ``max_steps`` / ``num_train_epochs`` given last (command line over recipe)."""
        given = {name: "command line" if name in command_line else self._recipe if name in self._recipe_values else None
                 for name in ("max_steps", "num_train_epochs")}
        if training_args.max_steps <= 0:  # max_steps -1 means "not set": the epochs decide
            given["max_steps"] = None
        steps, epochs = given["max_steps"], given["num_train_epochs"]
        if steps and epochs and steps == epochs:
            source = "the command line" if steps == "command line" else steps
            raise ValueError(f"{source}: max_steps and num_train_epochs are both given; one sets the run's length: "
                             "drop the other")
        if steps == "command line" and epochs:
            default = type(training_args).num_train_epochs
            logger.info("--max_steps %d sets the run's length (the recipe's num_train_epochs %g is not used)",
                        training_args.max_steps, training_args.num_train_epochs)
            training_args.num_train_epochs = default
        elif epochs == "command line" and steps:
            logger.info("--num_train_epochs %g sets the run's length (the recipe's max_steps %d is not used)",
                        training_args.num_train_epochs, training_args.max_steps)
            training_args.max_steps = -1

    def set_defaults_with_config(self, **kwargs) -> list[str]:
        checked = {key: check_recipe_value(key, value, self._hints[key], self._recipe) if key in self._hints else value
                   for key, value in kwargs.items()}
        options = [a.dest for a in self._actions]
        unknown = [key for key in checked if key not in options]
        if unknown:
            named = [_with_suggestion(key, options) for key in unknown]
            verb = "is no option" if len(unknown) == 1 else "are no options"
            raise ValueError(f"{self._recipe}: {', '.join(named)} {verb} of {self.prog} (see {self.prog} --help)")
        return super().set_defaults_with_config(**checked)
