"""User-typed row filters (``--train``): a small grammar of their own, never code.

A filter is a condition over a dataset's columns, e.g. ``n_active < 1e9`` or
``tokens*n_active*6 < 1e20 and not sparsity > 0.5``. The text is parsed with
``ast.parse(mode="eval")`` and walked; only the node types listed here are accepted, and the
mask is computed by this module with numpy. Nothing the user types reaches ``eval``,
``exec``, ``DataFrame.eval``/``query`` or any interpreter: an attribute, call, subscript,
string, lambda or any other construct is refused with one line naming it.

Grammar: column names, finite numbers, ``+ - * / **``, unary ``+ -``, comparisons
``< <= > >= == !=`` (chains allowed: ``1e8 < n_active <= 1e9``), ``and``, ``or``, ``not``,
``&``, ``|``, ``~`` (the pandas spellings of the same) and parentheses.
"""
from __future__ import annotations

import ast
import math
from typing import Mapping

import numpy as np

from tuner.errors import TunerError

MAX_LENGTH = 1000  # a filter is a short condition; a huge text is a mistake, not a filter
MAX_DEPTH = 50  # keeps the walk far from Python's recursion limit

_ARITH = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
          ast.Div: np.divide, ast.Pow: np.power}
_COMPARE = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater,
            ast.GtE: np.greater_equal, ast.Eq: np.equal, ast.NotEq: np.not_equal}


def parse(text: str, what: str = "--train") -> ast.Expression:
    """The checked syntax tree of ``text``; TunerError naming the first thing not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise TunerError(f"{what}: empty condition; e.g. 'n_active < 1e9'")
    if len(text) > MAX_LENGTH:
        raise TunerError(f"{what}: condition longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise TunerError(f"{what} {text!r}: not a condition ({getattr(exc, 'msg', exc)}); "
                         "allowed: column names, numbers, + - * / **, comparisons, and/or/not, "
                         "parentheses") from None
    _check(tree.body, text, what, 0)
    return tree


def _refuse(node: ast.AST, text: str, what: str) -> TunerError:
    part = ast.get_source_segment(text.strip(), node) or type(node).__name__
    return TunerError(f"{what} {text!r}: {part!r} is not allowed ({type(node).__name__}); "
                      "allowed: column names, numbers, + - * / **, comparisons, and/or/not, "
                      "parentheses")


def _check(node: ast.AST, text: str, what: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise TunerError(f"{what}: condition nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, ast.Name):
        return
    if isinstance(node, ast.Constant):
        # bool is an int subclass; True/False are not numbers a user means here.
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _refuse(node, text, what)
        if not math.isfinite(float(node.value)):
            raise TunerError(f"{what} {text!r}: {node.value!r} is not a finite number")
        return
    if isinstance(node, ast.BinOp) and type(node.op) in (*_ARITH, ast.BitAnd, ast.BitOr):
        children = [node.left, node.right]
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub, ast.Not,
                                                                  ast.Invert)):
        children = [node.operand]
    elif isinstance(node, ast.BoolOp):
        children = list(node.values)
    elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        children = [node.left, *node.comparators]
    else:
        raise _refuse(node, text, what)
    for child in children:
        _check(child, text, what, depth + 1)


def mask(text: str, columns: Mapping[str, np.ndarray], n: int, what: str = "--train") -> np.ndarray:
    """Boolean mask of the ``n`` rows ``text`` selects, from numeric ``columns``.

    Raises TunerError for a construct outside the grammar, an unknown column, or a
    result that is not one true/false per row.
    """
    tree = parse(text, what)
    with np.errstate(all="ignore"):  # 1/0 or overflow is inf/nan, compared like any value
        value = _Eval(text, columns, what).visit(tree.body)
    value = np.asarray(value)
    if value.dtype != bool:
        raise TunerError(f"{what} {text!r}: must be a true/false condition per run, "
                         "e.g. 'n_active < 1e9'")
    return np.broadcast_to(value, (n,)).copy()


class _Eval:
    """Computes a checked tree over numpy arrays (columns as float arrays)."""

    def __init__(self, text: str, columns: Mapping[str, np.ndarray], what: str):
        self.text, self.columns, self.what = text, columns, what

    def visit(self, node: ast.AST):
        if isinstance(node, ast.Name):
            if node.id not in self.columns:
                raise TunerError(f"{self.what} {self.text!r}: not a valid expression: unknown "
                                 f"column {node.id!r}; columns: {', '.join(self.columns)}")
            return self.columns[node.id]
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.BinOp):
            left, right = self.visit(node.left), self.visit(node.right)
            if isinstance(node.op, (ast.BitAnd, ast.BitOr)):
                self._bools(node, left, right)
                return (np.logical_and if isinstance(node.op, ast.BitAnd)
                        else np.logical_or)(left, right)
            self._numbers(node, left, right)
            return _ARITH[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp):
            v = self.visit(node.operand)
            if isinstance(node.op, (ast.Not, ast.Invert)):
                self._bools(node, v)
                return np.logical_not(v)
            self._numbers(node, v)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BoolOp):
            values = [self.visit(v) for v in node.values]
            self._bools(node, *values)
            op = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = values[0]
            for v in values[1:]:
                out = op(out, v)
            return out
        if isinstance(node, ast.Compare):
            operands = [self.visit(node.left), *map(self.visit, node.comparators)]
            self._numbers(node, *operands)
            out = None
            for op, a, b in zip(node.ops, operands, operands[1:]):
                part = _COMPARE[type(op)](a, b)
                out = part if out is None else np.logical_and(out, part)
            return out
        raise _refuse(node, self.text, self.what)  # unreachable after parse(); kept as a guard

    def _bools(self, node: ast.AST, *values) -> None:
        if any(np.asarray(v).dtype != bool for v in values):
            raise TunerError(f"{self.what} {self.text!r}: "
                             f"{ast.get_source_segment(self.text.strip(), node)!r} combines "
                             "numbers with and/or/not; compare them first (e.g. 'x < 1')")

    def _numbers(self, node: ast.AST, *values) -> None:
        if any(np.asarray(v).dtype == bool for v in values):
            raise TunerError(f"{self.what} {self.text!r}: "
                             f"{ast.get_source_segment(self.text.strip(), node)!r} does "
                             "arithmetic or comparison on a true/false value")
