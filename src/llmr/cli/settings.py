"""Stage commands take their settings as `llmr pipeline` does, from the same config sections.

`@stage_settings("retriever")` gives a command one --option per setting of the pipeline's `retriever`
section (nested ones with their prefix: --groups-n-negatives), each with the default and help written
once in the config class, plus `--config FILE` (a pipeline YAML: its sections) and `--set key=value`.
The command receives the validated section objects (and, with a `config` parameter, the whole
PipelineConfig: settings outside its sections come from --config and --set).
Precedence: defaults < file < --options < --set.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from llmr.pipeline.config import PipelineConfig

S = TypeVar("S", bound=BaseModel)


def options_as(section: type[S], **options: Any) -> S:
    """A command's options validated by the config section the pipeline reads them from, so both keep one
    bounds rule (`eval --k -1` ran and reported "k = -1"); the first error names its option, before any work."""
    try:
        return section.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = "--" + str(err["loc"][0]).replace("_", "-")
        raise typer.BadParameter(f"{err.get('input')!r}: {err['msg']}", param_hint=flag) from None


@dataclasses.dataclass(frozen=True)
class _Setting:
    path: tuple[str, ...]  # ("groups", "n_negatives") within the section
    type: Any
    default: Any
    help: str

    @property
    def param(self) -> str:
        return "_".join(self.path)


def _settings(obj: Any, prefix: tuple[str, ...] = ()) -> Iterator[_Setting]:
    """The leaves of a config object (a dataclass or a pydantic model), defaults taken from the object."""
    hints = typing.get_type_hints(type(obj))
    if isinstance(obj, BaseModel):
        fields = [(name, f.description or "") for name, f in type(obj).model_fields.items()]
    else:
        fields = [(f.name, f.metadata.get("help", "")) for f in dataclasses.fields(obj)]
    for name, help in fields:
        value = getattr(obj, name)
        if dataclasses.is_dataclass(value) or isinstance(value, BaseModel):
            yield from _settings(value, (*prefix, name))
        else:
            yield _Setting((*prefix, name), hints[name], value, help)


def _plain(hint: Any) -> Any:
    """The type typer parses (Optional unwrapped; a Literal is checked against its choices)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:  # typer takes no list of Literals; the config checks the items
        return list[str]
    return hint


def _option(section: str, setting: _Setting) -> inspect.Parameter:
    kind = _plain(setting.type)
    flag = "--" + setting.param.replace("_", "-")
    decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
    default = "auto" if setting.default is None else setting.default
    help = f"{setting.help} (default: {default}; {section}.{'.'.join(setting.path)})"
    info = typer.Option(None, *decls, help=help.strip(), show_default=False)
    return inspect.Parameter(setting.param, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=kind)


def stage_settings(*sections: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Generate the options of `sections` (pipeline config sections); the command gets each validated
    section as the keyword argument of the same name."""

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        given_config = "config" in inspect.signature(command).parameters  # the whole validated config too
        drop = {*sections, "config"}
        own = [p for p in inspect.signature(command).parameters.values() if p.name not in drop]
        defaults = PipelineConfig()
        generated: dict[str, tuple[str, _Setting]] = {}
        for section in sections:
            for s in _settings(getattr(defaults, section)):
                if s.param in generated or s.param in {p.name for p in own}:
                    raise TypeError(f"option --{s.param} is defined twice for {command.__name__}")
                generated[s.param] = (section, s)
        extra = [_option(section, s) for section, s in generated.values()]
        extra += [
            inspect.Parameter(
                "config_file",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, "--config", help=f"Pipeline YAML: its {', '.join(sections)} section(s)."),
                annotation=Path,
            ),
            inspect.Parameter(
                "overrides",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, "--set", help=f"Override a setting, e.g. --set {sections[0]}.seed=1."),
                annotation=list[str],
            ),
        ]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in generated}
            given = [
                f"{section}.{'.'.join(s.path)}={json.dumps(values[name])}"
                for name, (section, s) in generated.items()
                if values[name] is not None
            ]
            config_file, overrides = kwargs.pop("config_file"), kwargs.pop("overrides") or []
            try:
                cfg = PipelineConfig.load(config_file, [*given, *overrides])
            except (ValueError, OSError) as exc:
                raise typer.BadParameter(str(exc), param_hint="--config / --set / options") from None
            kwargs |= {"config": cfg} if given_config else {}
            return command(**kwargs, **{section: getattr(cfg, section) for section in sections})

        return with_parameters(run, command, drop=drop, extra=extra)

    return wrap


def with_parameters(
    run: Callable[..., Any], command: Callable[..., Any], drop: set[str], extra: list[inspect.Parameter]
) -> Callable[..., Any]:
    """`run` (a wrapper of `command`) as typer sees it: the command's parameters less `drop`, plus `extra`."""
    own = [p for p in inspect.signature(command).parameters.values() if p.name not in drop]
    run.__signature__ = inspect.Signature([*own, *extra])  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in [*own, *extra]}
    return run
