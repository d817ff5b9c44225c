"""A small row-expression language for the indicator catalogue and completeness conditions, evaluated
without eval: the text is parsed with `ast` and only a whitelist of nodes is interpreted.

    expr.evaluate(cohort, "op_id.notna() and fracture_type in ['subtroch', 'troch_a3'] and age > 70")

Allowed:
- column names (Name), constants (numbers, strings, True/False/None), lists or tuples of constants;
- comparisons ==, !=, <, <=, >, >= (chains like `50 <= age < 90` too), `in` / `not in` a list;
- `and`, `or`, `not`; arithmetic + - * / and unary minus on columns and numbers;
- the methods notna(), isna(), notnull(), isnull() of a column (no arguments).
Anything else (other calls or attributes, subscripts, lambdas, comprehensions, f-strings, `@` names,
`is`, conditional expressions) is an ExprError naming the construct. Results follow pandas' own
evaluation of the same text (`DataFrame.eval(engine="python")`): element-wise `&`, `|`, `~`, `isin`.
"""

from __future__ import annotations

import ast
import operator

import numpy as np
import pandas as pd

__all__ = ["ExprError", "check", "evaluate", "mask", "names"]

METHODS = {"notna": "notna", "isna": "isna", "notnull": "notna", "isnull": "isna"}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge}
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class ExprError(ValueError):
    """An expression uses something outside the expression language, or a column the data lack."""


def _parse(text: str) -> ast.Expression:
    if not isinstance(text, str) or not text.strip():
        raise ExprError(f"an expression must be a non-empty string, got {text!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"expression {text!r} does not parse ({exc.msg})") from None
    _Checker(text).visit(tree.body)
    return tree


class _Checker:
    def __init__(self, text: str):
        self.text = text

    def fail(self, node, what: str):
        raise ExprError(f"expression {self.text!r}: {what} is not allowed (only column names, constants, "
                        f"comparisons, in-lists, and/or/not, + - * / and .notna()/.isna())")

    def constant(self, node) -> bool:
        return isinstance(node, ast.Constant) and (node.value is None or
                                                   isinstance(node.value, (bool, int, float, str)))

    def visit(self, node):
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                self.visit(v)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
                self.fail(node, f"the operator {type(node.op).__name__}")
            self.visit(node.operand)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BIN:
                self.fail(node, f"the operator {type(node.op).__name__}")
            self.visit(node.left)
            self.visit(node.right)
        elif isinstance(node, ast.Compare):
            self.visit(node.left)
            for op, right in zip(node.ops, node.comparators):
                if isinstance(op, (ast.In, ast.NotIn)):
                    if not (isinstance(right, (ast.List, ast.Tuple)) and all(self.constant(e) for e in right.elts)):
                        self.fail(right, "`in` with anything but a list of constants")
                elif type(op) in _CMP:
                    self.visit(right)
                else:
                    self.fail(op, f"the comparison {type(op).__name__}")
        elif isinstance(node, ast.Call):
            f = node.func
            if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.attr in METHODS
                    and not node.args and not node.keywords):
                self.fail(node, f"the call {ast.unparse(node)!r}")
            self.name(f.value)
        elif isinstance(node, ast.Name):
            self.name(node)
        elif self.constant(node):
            pass
        else:
            self.fail(node, f"{type(node).__name__} ({ast.unparse(node)!r})")

    def name(self, node: ast.Name):
        if node.id.startswith("__"):
            self.fail(node, f"the name {node.id!r}")


def check(text: str) -> set[str]:
    """Validate an expression (ExprError if it leaves the language); returns the column names it uses."""
    return names(text)


def names(text: str) -> set[str]:
    """Column names an expression uses (after validating it)."""
    tree = _parse(text)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def evaluate(frame: pd.DataFrame, text: str):
    """Evaluate an expression on the columns of `frame`: a Series (or a scalar for a constant
    expression). ExprError for anything outside the language or a column the frame lacks."""
    tree = _parse(text)
    return _Eval(frame, text).ev(tree.body)


def mask(frame: pd.DataFrame, text: str) -> pd.Series:
    """Boolean Series of the rows meeting the expression (missing counts as not met)."""
    m = evaluate(frame, text)
    if np.isscalar(m) or m is None:
        return pd.Series(bool(m), index=frame.index)
    return pd.Series(m, index=frame.index).astype("boolean").fillna(False).astype(bool)


class _Eval:
    def __init__(self, frame: pd.DataFrame, text: str):
        self.frame, self.text = frame, text

    def ev(self, node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            if node.id not in self.frame.columns:
                raise ExprError(f"expression {self.text!r}: no column {node.id!r} in the data")
            return self.frame[node.id]
        if isinstance(node, ast.Call):
            col = self.ev(node.func.value)
            return getattr(pd, METHODS[node.func.attr])(col) if np.isscalar(col) or col is None \
                else getattr(col, METHODS[node.func.attr])()
        if isinstance(node, ast.BoolOp):
            vals = [self.ev(v) for v in node.values]
            op = operator.and_ if isinstance(node.op, ast.And) else operator.or_
            out = vals[0]
            for v in vals[1:]:
                out = op(out, v)
            return out
        if isinstance(node, ast.UnaryOp):
            v = self.ev(node.operand)
            if isinstance(node.op, ast.Not):
                return (not v) if isinstance(v, (bool, np.bool_)) else ~v
            return -v if isinstance(node.op, ast.USub) else +v
        if isinstance(node, ast.BinOp):
            return _BIN[type(node.op)](self.ev(node.left), self.ev(node.right))
        if isinstance(node, ast.Compare):
            out = None
            left = self.ev(node.left)
            for op, rnode in zip(node.ops, node.comparators):
                if isinstance(op, (ast.In, ast.NotIn)):
                    values = [e.value for e in rnode.elts]
                    r = left.isin(values) if isinstance(left, pd.Series) else left in values
                    if isinstance(op, ast.NotIn):
                        r = ~r if isinstance(r, pd.Series) else not r
                    right = None
                else:
                    right = self.ev(rnode)
                    r = _CMP[type(op)](left, right)
                out = r if out is None else out & r
                left = right
            return out
        raise ExprError(f"expression {self.text!r}: cannot evaluate {type(node).__name__}")  # unreachable
