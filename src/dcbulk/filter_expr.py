"""Event filters written as expressions over scalar features, e.g. ``"deform < 0.1 & area_um > 20"``.

:func:`parse_filter` checks an expression once (only feature names, numbers, comparisons,
arithmetic and ``&``/``|``/``~``/``and``/``or``/``not`` are allowed; ``&``, ``|`` and ``~``
mean ``and``, ``or`` and ``not``, so they bind looser than comparisons) and returns a picklable
:class:`FilterExpr`; :meth:`FilterExpr.evaluate` turns a dict of feature arrays into a
boolean event filter.
"""
from __future__ import annotations

import ast
import operator
from dataclasses import dataclass

import numpy as np

from .errors import FilterSyntaxError, PlanError

__all__ = ["FilterExpr", "parse_filter"]

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow, ast.Mod: operator.mod}
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
           ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}


@dataclass(frozen=True)
class FilterExpr:
    """A checked filter expression and the scalar features it reads."""

    text: str
    names: tuple[str, ...]

    def evaluate(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Return the boolean filter for the given feature arrays."""
        tree = ast.parse(self.text, mode="eval")
        result = np.asarray(_eval(tree.body, features))
        n = len(next(iter(features.values()))) if features else 0
        if result.dtype != bool:
            raise PlanError(f"filter '{self.text}' does not give true/false per event")
        return np.broadcast_to(result, (n,)).copy()


def _eval(node, env):
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, env)
        if isinstance(node.op, ast.Not):
            return np.logical_not(value)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, env) for v in node.values]
        func = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = values[0]
        for v in values[1:]:
            out = func(out, v)
        return out
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        out = True
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, env)
            out = np.logical_and(out, _CMPOPS[type(op)](left, right))
            left = right
        return out
    raise PlanError(f"unsupported element in filter: {ast.dump(node)}")


def _check(node, names: list[str], text: str) -> None:
    allowed = (ast.Expression, ast.Name, ast.Constant, ast.UnaryOp, ast.BinOp, ast.BoolOp,
               ast.Compare, ast.Load, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd,
               *_BINOPS, *_CMPOPS)
    for sub in ast.walk(node):
        if not isinstance(sub, allowed):
            raise FilterSyntaxError(
                f"filter '{text}': '{type(sub).__name__}' is not allowed (use feature "
                f"names, numbers, comparisons, + - * / % ** and and/or/not or & | ~)")
        if isinstance(sub, ast.Constant) and not isinstance(sub.value, (int, float, bool)):
            raise FilterSyntaxError(f"filter '{text}': only numbers are allowed as constants")
        if isinstance(sub, ast.Name) and sub.id not in names:
            names.append(sub.id)


def parse_filter(text: str | None) -> FilterExpr | None:
    """Check a filter expression; ``None`` or an empty string means no filter.

    Raises
    ------
    FilterSyntaxError
        (a :class:`~dcbulk.errors.PlanError` and a :class:`~dcbulk.errors.UsageError`) on a
        syntax error or anything but feature names, numbers and operators.
    """
    if text is None or not text.strip():
        return None
    # "&", "|", "~" bind looser than comparisons here (as in pandas.query), so that
    # "deform < 0.1 & area_um > 20" means what it says; constants are numbers only, so the
    # textual replacement cannot touch anything else.
    text = " ".join(text.replace("&", " and ").replace("|", " or ").replace("~", " not ").split())
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise FilterSyntaxError(f"filter '{text}' is not a valid expression: {exc.msg}") from exc
    names: list[str] = []
    _check(tree, names, text)
    if not names:
        raise FilterSyntaxError(f"filter '{text}' uses no feature")
    return FilterExpr(text, tuple(names))
