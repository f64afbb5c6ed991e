"""The small parsers the deployment tests rely on, on hand-written cases."""

from __future__ import annotations

import pytest

from tests.deploy.deployfiles import (
    dockerignore_excludes,
    dockerignore_patterns,
    exec_form,
    interpolate,
    key_value_pairs,
    parse_dockerfile,
    promql_names,
)


@pytest.mark.parametrize(
    ("expr", "metrics", "labels"),
    [
        ("up", {"up"}, set()),
        ('count(up{job="x"} == 1)', {"up"}, {"job"}),
        (
            'histogram_quantile(0.9, sum by (le, stream) (rate(a_bucket{stream=~"$s"}[5m])))',
            {"a_bucket"},
            {"le", "stream"},
        ),
        (
            "sum by (s, r) (rate(a_total[$__rate_interval])) / ignoring (r) group_left "
            "sum by (s) (rate(b_total[1m]))",
            {"a_total", "b_total"},
            {"s", "r"},
        ),
        (
            'sum without (instance) (c{route!="/x",m="by (y)"}) offset 5m',
            {"c"},
            {"instance", "route", "m"},
        ),
    ],
)
def test_promql_names(expr: str, metrics: set[str], labels: set[str]) -> None:
    assert promql_names(expr) == (metrics, labels)


def test_dockerignore_allowlist_semantics() -> None:
    rules = dockerignore_patterns("*\n!service/\n!README.md\n**/__pycache__\n")
    assert dockerignore_excludes(rules, "tests/conftest.py")
    assert dockerignore_excludes(rules, "service/__pycache__/app.pyc")
    assert not dockerignore_excludes(rules, "service/api/health.py")
    assert not dockerignore_excludes(rules, "README.md")
    assert dockerignore_excludes(rules, "README.mdx")


def test_interpolate_like_compose() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $SET $$SET", env) == (
        "v d  d v $SET"
    )
    assert interpolate({"a": ["${UNSET}", 3]}, env) == {"a": ["", 3]}
    with pytest.raises(ValueError, match="UNSET"):
        interpolate("${UNSET:?set it}", env)


def test_parse_dockerfile_joins_continuations_and_skips_comments() -> None:
    stages = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nFROM a:1 AS one\nRUN x \\\n    # note\n    && y\n"
        'FROM a:1\nENV A=1 \\\n    B="two words"\nCMD ["xent", "serve"]\n'
    )
    assert [(s.image, s.name) for s in stages] == [("a:1", "one"), ("a:1", None)]
    assert stages[0].all("RUN")[0].args == "x && y"
    assert stages[1].env() == {"A": "1", "B": "two words"}
    assert exec_form(stages[1].all("CMD")[0].args) == ["xent", "serve"]
    assert exec_form("xent serve") is None
    assert key_value_pairs("K=v BARE") == {"K": "v", "BARE": ""}
