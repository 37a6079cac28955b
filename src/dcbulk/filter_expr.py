"""Event filters written as expressions over scalar features, e.g. ``"deform < 0.1 & area_um > 20"``.

:func:`parse_filter` checks an expression once (only feature names, numbers, comparisons,
arithmetic and ``&``/``|``/``~``/``and``/``or``/``not`` are allowed; ``&``, ``|`` and ``~``
mean ``and``, ``or`` and ``not``, so they bind looser than comparisons) and returns a picklable
:class:`FilterExpr`; :meth:`FilterExpr.evaluate` turns a dict of feature arrays into a
boolean event filter.

Expressions are bounded, so that no filter can exhaust the client or hang a worker: at most
:data:`MAX_LENGTH` characters, :data:`MAX_NODES` syntax-tree nodes and :data:`MAX_DEPTH`
levels of nesting. Numbers are float64 (``True``/``False`` stay booleans), so ``10 ** 10 ** 9``
is no Python big-integer power; every part made of numbers only is computed when the
expression is checked, and an overflow or a division by zero there (``1 / 0``,
``deform / (2 - 2)``) is a :class:`~dcbulk.errors.FilterSyntaxError`, found before any file
is read.
"""
from __future__ import annotations

import ast
import operator
from dataclasses import dataclass

import numpy as np

from .errors import FilterSyntaxError, PlanError

__all__ = ["FilterExpr", "MAX_DEPTH", "MAX_LENGTH", "MAX_NODES", "parse_filter"]

#: longest filter expression accepted (characters)
MAX_LENGTH = 2000
#: most syntax-tree nodes accepted (names, numbers, operators)
MAX_NODES = 400
#: deepest nesting accepted (e.g. unary minus signs or parentheses inside each other)
MAX_DEPTH = 50

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
        return _number(node.value)
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


def _number(value):
    """A constant as the evaluator uses it: booleans as such, every number as float64."""
    return value if isinstance(value, bool) else np.float64(value)


def _depth(node) -> int:
    """Nesting depth of ``node`` (iterative: deep trees cannot exhaust the stack)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        sub, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(sub))
    return deepest


def _constant_only(node) -> bool:
    return all(not isinstance(sub, ast.Name) for sub in ast.walk(node))


def _fold(node, text: str) -> None:
    """Compute every numbers-only part of ``node`` now; refuse overflow and division by 0."""
    if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp)) \
            and _constant_only(node):
        try:
            with np.errstate(all="raise"):
                _eval(node, {})
        except (FloatingPointError, ZeroDivisionError, OverflowError) as exc:
            raise FilterSyntaxError(
                f"filter '{text}': '{ast.unparse(node)}' cannot be computed "
                f"({_arith_reason(exc)})") from None
        return
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.Mod)) \
            and _constant_only(node.right):
        with np.errstate(all="ignore"):
            if _eval(node.right, {}) == 0:
                raise FilterSyntaxError(f"filter '{text}': '{ast.unparse(node)}' divides "
                                        f"by zero")
    for child in ast.iter_child_nodes(node):
        _fold(child, text)


def _arith_reason(exc: BaseException) -> str:
    text = str(exc).lower()
    if "divide" in text or "division" in text or isinstance(exc, ZeroDivisionError):
        return "division by zero"
    if "overflow" in text or isinstance(exc, OverflowError):
        return "the number overflows"
    return f"invalid arithmetic: {exc}"


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


def _boolean(node) -> bool:
    """Whether ``node`` gives true/false per event by its form: a comparison, a bool, or
    and/or/not of those (numpy would take any number as true where it is not 0)."""
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.Constant):
        return isinstance(node.value, bool)
    if isinstance(node, ast.BoolOp):
        return all(_boolean(value) for value in node.values)
    return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) \
        and _boolean(node.operand)


def _check_boolean(tree: ast.Expression, text: str) -> None:
    """Refuse a filter that is not true/false per event, or and/or/not of a number
    ('not deform', 'deform > 0.1 or tilt')."""
    def logical(node) -> bool:
        return isinstance(node, ast.BoolOp) or (isinstance(node, ast.UnaryOp)
                                                and isinstance(node.op, ast.Not))

    for sub in ast.walk(tree):
        operands = (sub.values if isinstance(sub, ast.BoolOp) else [sub.operand]
                    if logical(sub) else [])
        for operand in operands:  # the number itself, not the and/or/not holding it
            if not _boolean(operand) and not logical(operand):
                raise FilterSyntaxError(f"filter '{text}': '{ast.unparse(operand)}' is a "
                                        f"number, not true/false: and/or/not take comparisons")
    if not _boolean(tree.body):
        raise FilterSyntaxError(f"filter '{text}' does not give true/false per event (use a "
                                f"comparison, e.g. 'deform > 0.1')")


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
    if len(text) > MAX_LENGTH:
        raise FilterSyntaxError(f"filter '{text[:60]}...' is {len(text):,} characters long "
                                f"(at most {MAX_LENGTH:,})")
    typed = " ".join(text.split())  # what messages quote: the user's words, not ours
    text = " ".join(text.replace("&", " and ").replace("|", " or ").replace("~", " not ").split())
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise FilterSyntaxError(f"filter '{typed}' is not a valid expression: {exc.msg}") from exc
    except (RecursionError, MemoryError):
        raise FilterSyntaxError(f"filter '{typed[:60]}...' is nested too deeply "
                                f"(at most {MAX_DEPTH} levels)") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise FilterSyntaxError(f"filter '{typed[:60]}...' has {nodes:,} elements "
                                f"(at most {MAX_NODES})")
    if (depth := _depth(tree)) > MAX_DEPTH:
        raise FilterSyntaxError(f"filter '{typed[:60]}...' is nested {depth} levels deep "
                                f"(at most {MAX_DEPTH})")
    names: list[str] = []
    _check(tree, names, typed)
    _check_boolean(tree, typed)
    _fold(tree.body, typed)
    if not names:
        raise FilterSyntaxError(f"filter '{typed}' uses no feature")
    return FilterExpr(text, tuple(names))
