"""A law written as a formula: parsed by a whitelist, differentiated symbolically, run on numpy.

The text is parsed by Python's ``ast`` and walked node by node; only numbers, names,
``+ - * / **``, unary minus and calls of ``exp, log, sqrt, min, max`` are accepted, and each is
turned into a SymPy object directly (never ``eval``, ``exec`` or ``sympify`` on user text).
SymPy then gives the derivatives, the coefficients the law is linear in, and the terms each
coefficient belongs to; a small tree walker of our own evaluates every expression with numpy,
so nothing generated from user text is executed either.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from tuner.errors import TunerError

# Names a formula may use for the data; every other name is a coefficient.
VARIABLES = {"N": "n_active", "N_total": "n_total", "D": "tokens", "S": "sparsity"}
FUNCTIONS = {"exp": 1, "log": 1, "sqrt": 1, "min": None, "max": None}
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)


def _segment(text: str, node: ast.AST) -> str:
    return ast.get_source_segment(text, node) or type(node).__name__


def _refuse(text: str, node: ast.AST, why: str) -> TunerError:
    return TunerError(f"law formula {text!r}: {why}: {_segment(text, node)!r}")


def _lambda_as_name(text: str) -> str:
    """``text`` with the keyword ``lambda`` used as a name spelled ``lambda_``."""
    import io
    import tokenize

    out = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        s = tok.string
        out.append((tok.type, "lambda_" if tok.type == tokenize.NAME and s == "lambda" else s))
    return tokenize.untokenize(out).strip()


MAX_DEPTH = 64


def _depth(tree: ast.AST) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in ast.iter_child_nodes(node))
    return deepest


def check(text: str) -> ast.Expression:
    """Parse ``text`` and refuse anything outside the grammar, naming the offending part."""
    if not isinstance(text, str) or not text.strip():
        raise TunerError("law formula is empty")
    if len(text) > 2000:
        raise TunerError(f"law formula is {len(text)} characters long (at most 2000)")
    text = text.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        try:  # 'lambda' is a Python keyword but a common coefficient name (Eq 5)
            tree = ast.parse(_lambda_as_name(text), mode="eval")
            text = _lambda_as_name(text)
        except (SyntaxError, RecursionError, MemoryError):
            raise TunerError(f"law formula {text!r}: not a formula ({exc.msg} at column "
                             f"{exc.offset})") from None
    except (RecursionError, MemoryError):
        raise TunerError(f"law formula: nested more than {MAX_DEPTH} levels deep") from None
    if _depth(tree) > MAX_DEPTH:  # every later step walks the tree recursively
        raise TunerError(f"law formula: nested more than {MAX_DEPTH} levels deep")
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.Load)) or isinstance(node, _BINOPS):
            continue
        if isinstance(node, (ast.USub, ast.UAdd)):
            continue
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, _BINOPS):
                raise _refuse(text, node, "operator not allowed (use + - * / **)")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise _refuse(text, node, "operator not allowed")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise _refuse(text, node, "only numbers are allowed as constants")
            if not math.isfinite(node.value):
                raise _refuse(text, node, "numbers must be finite")
        elif isinstance(node, ast.Name):
            if node.id.startswith("_"):
                raise _refuse(text, node, "names may not start with '_'")
            if node.id in FUNCTIONS and id(node) not in called:
                raise _refuse(text, node, f"{node.id} is a function: call it")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise _refuse(text, node.func, "unknown function (allowed: "
                              f"{', '.join(FUNCTIONS)})")
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
                raise _refuse(text, node, "only plain positional arguments are allowed")
            want = FUNCTIONS[node.func.id]
            if want is not None and len(node.args) != want:
                raise _refuse(text, node, f"{node.func.id} takes {want} argument")
            if want is None and len(node.args) < 2:
                raise _refuse(text, node, f"{node.func.id} takes at least 2 arguments")
        elif isinstance(node, ast.Attribute):
            raise _refuse(text, node, "attributes are not allowed")
        elif isinstance(node, ast.Subscript):
            raise _refuse(text, node, "subscripts are not allowed")
        elif isinstance(node, ast.Lambda):
            raise _refuse(text, node, "lambdas are not allowed")
        elif isinstance(node, ast.Compare):
            raise _refuse(text, node, "comparisons are not allowed")
        else:
            raise _refuse(text, node, f"{type(node).__name__} is not allowed")
    _check_constants(text, tree.body)
    return tree


def _constant(node: ast.AST) -> float | None:
    """The value of a part of a checked formula with no names in it (None if it has one),
    in floating point: ``9**9**9`` is inf here, not an integer that takes hours."""
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.UnaryOp):
        v = _constant(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp):
        a, b = _constant(node.left), _constant(node.right)
        if a is None or b is None:
            return None
        with np.errstate(all="ignore"):
            x, y = np.float64(a), np.float64(b)
            op = type(node.op)
            return float({ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
                          ast.Div: np.divide, ast.Pow: np.power}[op](x, y))
    if isinstance(node, ast.Call):
        args = [_constant(a) for a in node.args]
        if any(a is None for a in args):
            return None
        with np.errstate(all="ignore"):
            f = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt}.get(node.func.id)
            return float(f(args[0])) if f else float((max if node.func.id == "max" else min)(args))
    return None


def _check_constants(text: str, root: ast.AST) -> None:
    """Refuse a constant part that is not a finite number (``0**-1``, ``9**9**9``) and a
    division by a constant zero: every prediction would be inf or NaN."""
    for node in ast.walk(root):
        v = _constant(node)
        if v is not None and not math.isfinite(v):
            raise _refuse(text, node, "this constant part is not a finite number")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) \
                and _constant(node.right) == 0:
            raise _refuse(text, node, "division by zero")


def names(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(coefficients, variables) of a formula in order of first appearance, from the checked
    ``ast`` alone (no SymPy: cheap enough for every law at start-up)."""
    tree = check(text)
    seen: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not (isinstance(getattr(node, "ctx", None), ast.Load)
                                               and node.id in FUNCTIONS):
            name = "lambda" if node.id == "lambda_" else node.id
            if name not in seen:
                seen.append(name)
    # ast.walk is breadth-first; order by position in the text instead
    pos = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            name = "lambda" if node.id == "lambda_" else node.id
            pos[name] = min(pos.get(name, (1 << 30, 0)), (node.lineno, node.col_offset))
    seen.sort(key=lambda n: pos[n])
    coefficients = tuple(n for n in seen if n not in VARIABLES)
    variables = tuple(n for n in seen if n in VARIABLES)
    if not coefficients:
        raise TunerError(f"law formula {text!r}: no coefficient to fit (every name is a "
                         f"variable: {', '.join(VARIABLES)})")
    return coefficients, variables


def _to_sympy(node: ast.AST, symbols: dict):
    import sympy as sp

    if isinstance(node, ast.Expression):
        return _to_sympy(node.body, symbols)
    if isinstance(node, ast.Constant):
        v = node.value
        return sp.Integer(v) if isinstance(v, int) else sp.Float(v, 17)
    if isinstance(node, ast.Name):
        name = "lambda" if node.id == "lambda_" else node.id
        return symbols.setdefault(name, sp.Symbol(name))
    if isinstance(node, ast.UnaryOp):
        inner = _to_sympy(node.operand, symbols)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp):
        a, b = _to_sympy(node.left, symbols), _to_sympy(node.right, symbols)
        op = type(node.op)
        return {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                ast.Div: lambda: a / b, ast.Pow: lambda: a ** b}[op]()
    if isinstance(node, ast.Call):
        args = [_to_sympy(a, symbols) for a in node.args]
        name = node.func.id
        if name == "exp":
            return sp.exp(args[0])
        if name == "log":
            return sp.log(args[0])
        if name == "sqrt":
            return sp.sqrt(args[0])
        return (sp.Min if name == "min" else sp.Max)(*args)
    raise AssertionError(f"unchecked node {type(node).__name__}")  # check() refused it


# -- terms shared by the passes of one evaluation ------------------------------------------------

TERMS = "_terms"  # the environment key of a Terms ('_' names cannot clash with a coefficient)


class Terms:
    """The costly subexpressions (powers, exp, log) of one evaluation, computed once.

    An evaluation computes the law's linear form (to solve the coefficients it is linear in),
    then the prediction and the gradient at the solved point. All three need the same powers
    of the data (``N**alpha``, ``log(N)``), which cost far more than the arithmetic around
    them. A ``Terms`` put in the environment keeps each such value whose inputs stay fixed:
    every name except ``volatile`` (the coefficients being solved). Values of the data alone
    go to ``lasting``, a dict its owner keeps across evaluations on the same data.

    Reuse is safe by construction: the first environment seen is remembered (data arrays by
    identity, coefficients by value), and one that differs empties the store.
    """

    def __init__(self, volatile: Sequence[str] = (), lasting: dict | None = None):
        self.volatile = frozenset(volatile)
        self.values: dict = {}
        self.lasting = lasting
        self._bound: dict | None = None
        self._pending: dict = {}  # key -> [whole-length array, row starts filled, rows filled]

    def bind(self, env: dict) -> None:
        """Check ``env`` against the one the stored values came from (see the class doc)."""
        fixed = {k: v for k, v in env.items() if k != TERMS and k not in self.volatile}
        if self._bound is None:
            self._bound = fixed
        elif not self._same(fixed):
            self.values.clear()
            self._pending.clear()
            self._bound = fixed
        if self.lasting is not None:
            data = [fixed.get(v) for v in VARIABLES]
            if any(a is not b for a, b in zip(self.lasting.setdefault(TERMS, data), data)):
                self.lasting.clear()
                self._pending.clear()
                self.lasting[TERMS] = data

    def rows(self, rows: slice) -> "TermRows":
        """These terms on a block of rows of the data they are bound to (``TermRows``)."""
        return TermRows(self, rows)

    def _store(self, names: frozenset) -> dict:
        return self.lasting if self.lasting is not None and names <= _DATA else self.values

    def _collect(self, key, names: frozenset, value: np.ndarray, rows: slice) -> None:
        """Keep a value computed block by block once all of its rows are in."""
        n = len(self._bound["D"])
        if np.ndim(value) == 0:  # a function of the coefficients alone
            self._store(names)[key] = value
            return
        if np.shape(value) != (rows.stop - rows.start,):
            return
        entry = self._pending.setdefault(key, [np.empty(n), set(), 0])
        if rows.start not in entry[1]:
            entry[0][rows] = value
            entry[1].add(rows.start)
            entry[2] += rows.stop - rows.start
        if entry[2] == n:
            self._store(names)[key] = self._pending.pop(key)[0]

    def _same(self, fixed: dict) -> bool:
        old = self._bound
        if old.keys() != fixed.keys():
            return False
        for k, v in fixed.items():
            if k in VARIABLES:
                if v is not old[k]:
                    return False
            elif v is not old[k] and not np.array_equal(v, old[k], equal_nan=True):
                return False
        return True

    def get(self, key, names: frozenset, compute: Callable[[dict], np.ndarray], env: dict):
        """``compute(env)``, remembered under ``key`` when none of ``names`` is volatile."""
        if names & self.volatile:
            return compute(env)
        store = self._store(names)
        value = store.get(key)
        if value is None:
            value = store[key] = compute(env)
        return value


class TermRows:
    """``Terms`` on the rows ``rows`` of their data, for a pass made block by block (its
    temporaries then stay in the CPU cache): a kept value is served sliced, and a value
    computed on a block is collected into a whole-length one, kept once every block is in.
    Made by ``Compiled.gradient_rows`` from the environment the terms were bound to, sliced."""

    def __init__(self, whole: Terms, rows: slice):
        self.whole, self.rows = whole, rows
        self.volatile = whole.volatile

    def get(self, key, names: frozenset, compute: Callable[[dict], np.ndarray], env: dict):
        if names & self.volatile:
            return compute(env)
        value = self.whole._store(names).get(key)
        if value is not None:
            return value[..., self.rows] if np.ndim(value) else value
        value = compute(env)
        self.whole._collect(key, names, value, self.rows)
        return value


_DATA = frozenset(VARIABLES)


_KEYS: dict = {}  # expression -> small int: a cheap dictionary key at evaluation time


def _shared(key, names, compute: Callable[[dict], np.ndarray]) -> Callable[[dict], np.ndarray]:
    """``compute``, kept in the environment's Terms (if any) under ``key`` (an expression)."""
    names = frozenset(names)
    key = _KEYS.setdefault(key, len(_KEYS))

    def shared(env):
        terms = env.get(TERMS)
        return compute(env) if terms is None else terms.get(key, names, compute, env)
    return shared


def _power_key(base: str, exponent: str):
    """The key of base**exponent for two names: one key for both walkers, which compute it
    alike (``np.power`` of the two values), so the prediction and the derivatives share it;
    a plain tuple, so a prediction needs no SymPy."""
    return ("pow", base, exponent)


# -- numpy evaluation of SymPy results (our own walker: nothing generated is exec'd) -------
#
# SymPy's derivatives are first written as plain trees (nested lists of names, numbers and
# operations, ``_tree``), which the law cache keeps on disk, so a command whose law was seen
# before needs no SymPy at all; ``_from_tree`` turns a tree into numpy closures.

def _tree(expr, defs: Mapping | None = None) -> list:
    """``expr`` as a plain tree; every decision about how to compute it is made here.

    ``defs`` maps the common-subexpression symbols ``expr`` may use to what they stand for,
    so a costly term is shared (``Terms``) under the same key in every program."""
    import sympy as sp

    defs = defs or {}
    if expr.is_Symbol:
        return ["s", expr.name]
    if expr.is_Number:
        return ["n", float(expr)]
    if expr is sp.E:
        return ["n", math.e]
    if expr.is_Pow:
        b, e = expr.args
        if e == -1:
            return ["inv", _tree(b, defs)]
        if e == 2:
            return ["sq", _tree(b, defs)]
        if e == sp.Rational(1, 2):
            return ["sqrt", _tree(b, defs)]
        if e == -sp.Rational(1, 2):
            return ["inv", ["sqrt", _tree(b, defs)]]
        if b.is_Symbol and e.is_Symbol:  # as the formula's own walker computes N**alpha
            if _own(b) and _own(e):
                return ["npow", b.name, e.name]
            # A common subexpression '_t' stands for different things in different programs:
            # keyed by what it stands for.
            return ["pow", *_costly(expr, defs), ["s", b.name], ["s", e.name]]
        if b.is_Symbol and (-e).is_Symbol:  # N**(-alpha): 1/N**alpha shares N**alpha
            return ["inv", _tree(b ** (-e), defs)]  # (the reciprocal is cheap: not kept)
        return ["pow", *_costly(expr, defs), _tree(b, defs), _tree(e, defs)]
    if isinstance(expr, (sp.exp, sp.log)):
        op = "exp" if isinstance(expr, sp.exp) else "log"
        return [op, *_costly(expr, defs), _tree(expr.args[0], defs)]
    if expr.is_Add or expr.is_Mul or isinstance(expr, (sp.Min, sp.Max)):
        op = ("add" if expr.is_Add else "mul" if expr.is_Mul
              else "min" if isinstance(expr, sp.Min) else "max")
        return [op, *(_tree(a, defs) for a in expr.args)]
    if isinstance(expr, sp.Heaviside):  # derivatives of min and max
        return ["step", _tree(expr.args[0], defs)]
    if isinstance(expr, sp.Piecewise) or isinstance(expr, sp.Abs) or isinstance(expr, sp.sign):
        raise TunerError(f"law formula: cannot evaluate {expr}")
    raise TunerError(f"law formula: unsupported expression {type(expr).__name__}: {expr}")


def _own(expr) -> bool:
    """A name of the formula's (the grammar refuses names that start with '_')."""
    return bool(expr.is_Symbol) and not expr.name.startswith("_")


def _costly(expr, defs: Mapping) -> tuple[str, list[str]]:
    """The sharing key of a power, exp or log (its full expression) and the names in it."""
    import sympy as sp
    full = expr.xreplace(defs)
    return sp.srepr(full), sorted(s.name for s in full.free_symbols)


def _fold(op: Callable, args: list[Callable]) -> Callable[[dict], np.ndarray]:
    """``op`` applied left to right over the values of ``args`` (a sum, a product, min, max)."""
    def fold(env):
        out = args[0](env)
        for f in args[1:]:
            out = op(out, f(env))
        return out
    return fold


def _from_tree(t: list) -> Callable[[dict], np.ndarray]:
    """A function of an environment (symbol name -> array) computing tree ``t`` with numpy."""
    op = t[0]
    if op == "s":
        name = t[1]
        return lambda env: env[name]
    if op == "n":
        value = float(t[1])
        return lambda env: value
    if op == "npow":
        b, e = t[1], t[2]
        return _shared(_power_key(b, e), (b, e), lambda env: np.power(env[b], env[e]))
    if op in ("pow", "exp", "log"):
        args = [_from_tree(a) for a in t[3:]]
        if op == "pow":
            base, exponent = args
            return _shared(t[1], t[2], lambda env: np.power(base(env), exponent(env)))
        fn = np.exp if op == "exp" else np.log
        return _shared(t[1], t[2], lambda env: fn(args[0](env)))
    args = [_from_tree(a) for a in t[1:]]
    if op == "inv":
        return lambda env: 1.0 / args[0](env)
    if op == "sq":
        def square(env):
            v = args[0](env)
            return v * v
        return square
    if op == "sqrt":
        return lambda env: np.sqrt(args[0](env))
    if op == "step":
        return lambda env: np.heaviside(args[0](env), 0.5)
    if op in ("add", "mul", "min", "max"):
        return _fold({"add": lambda a, b: a + b, "mul": lambda a, b: a * b,
                      "min": np.minimum, "max": np.maximum}[op], args)
    raise TunerError(f"law cache: unknown operation {op!r}")


def value_function(text: str) -> Callable[[dict], np.ndarray]:
    """The numpy function computing a law's value from its formula, checked, without SymPy."""
    return _compile_ast(check(text))


def _compile_ast(node: ast.AST) -> Callable[[dict], np.ndarray]:
    """A numpy function of the formula exactly as written (same operations, same order), so
    a law's value is what its hand-written form computes, to the last bit."""
    if isinstance(node, ast.Expression):
        return _compile_ast(node.body)
    if isinstance(node, ast.Constant):
        value = float(node.value)
        return lambda env: value
    if isinstance(node, ast.Name):
        name = "lambda" if node.id == "lambda_" else node.id
        return lambda env: env[name]
    if isinstance(node, ast.UnaryOp):
        inner = _compile_ast(node.operand)
        return (lambda env: -inner(env)) if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp):
        a, b = _compile_ast(node.left), _compile_ast(node.right)
        op = type(node.op)
        if op is ast.Add:
            return lambda env: a(env) + b(env)
        if op is ast.Sub:
            return lambda env: a(env) - b(env)
        if op is ast.Mult:
            return lambda env: a(env) * b(env)
        if op is ast.Div:
            return lambda env: a(env) / b(env)
        if isinstance(node.left, ast.Name) and isinstance(node.right, ast.Name):
            names = [("lambda" if n.id == "lambda_" else n.id) for n in (node.left, node.right)]
            return _shared(_power_key(*names), names, lambda env: np.power(a(env), b(env)))
        return lambda env: np.power(a(env), b(env))
    if isinstance(node, ast.Call):
        args = [_compile_ast(x) for x in node.args]
        fn = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt}.get(node.func.id)
        if fn is not None:
            return lambda env: fn(args[0](env))
        return _fold(np.minimum if node.func.id == "min" else np.maximum, args)
    raise AssertionError(f"unchecked node {type(node).__name__}")  # check() refused it


def program_code(exprs: Sequence) -> dict:
    """Several SymPy expressions as one program's plain trees, sharing common
    subexpressions (SymPy ``cse``): ``{"steps": [[name, tree], ...], "outputs": [tree, ...]}``."""
    import sympy as sp

    # '_' names cannot clash with a user's coefficient (the grammar refuses them).
    reps, reduced = sp.cse(list(exprs), symbols=sp.numbered_symbols("_t"), optimizations=None)
    defs: dict = {}  # each '_t' symbol -> the expression it stands for (keys of Terms)
    steps = []
    for sym, e in reps:
        steps.append([sym.name, _tree(e, defs)])
        defs[sym] = e.xreplace(defs)
    return {"steps": steps, "outputs": [_tree(e, defs) for e in reduced]}


def _check_code(text: str, code: Mapping) -> None:
    """TunerError unless ``code`` (a cached ``derivative_code``) fits the formula ``text``:
    its coefficients in the formula's order, one gradient output per coefficient, one linear
    form column per linear coefficient, every name read defined before it is read, and every
    shared term keyed with exactly the names it depends on (``Terms`` relies on them)."""
    own = names(text)[0]
    coefficients, linear = list(code["coefficients"]), list(code["linear"])
    if (coefficients != [n for n in own if n in coefficients]
            or not set(linear) <= set(coefficients)
            or len(code["gradient"]["outputs"]) != len(coefficients)
            or len(code["linear_form"]["outputs"]) != 1 + len(linear)):
        raise TunerError("law cache: an entry that does not fit its formula")
    for program in (code["gradient"], code["linear_form"]):
        deps = {n: {n} for n in [*own, *VARIABLES]}  # name -> the formula names it stands for
        for name, tree in program["steps"]:
            deps[str(name)] = _depends(tree, deps)
        for tree in program["outputs"]:
            _depends(tree, deps)


def _depends(t: list, deps: Mapping[str, set]) -> set:
    """The formula names tree ``t`` depends on; TunerError for a node that does not fit."""
    op = t[0]
    if op == "n":
        float(t[1])
        return set()
    if op in ("s", "npow"):
        if not all(isinstance(n, str) and n in deps for n in t[1:]):
            raise TunerError(f"law cache: a name the formula does not define in {t}")
        return set().union(*(deps[n] for n in t[1:]))
    children = t[3:] if op in ("pow", "exp", "log") else t[1:]
    out = set().union(*(_depends(a, deps) for a in children))
    if op in ("pow", "exp", "log") and (not isinstance(t[1], str) or sorted(out) != t[2]):
        raise TunerError(f"law cache: a shared term keyed with the wrong names in {t}")
    return out


class Program:
    """A ``program_code`` run with numpy: its steps in order, then its outputs."""

    def __init__(self, code: Mapping):
        self.steps = [(name, _from_tree(t)) for name, t in code["steps"]]
        self.outputs = [_from_tree(t) for t in code["outputs"]]

    def __call__(self, env: dict) -> list:
        env = dict(env)
        for name, f in self.steps:
            env[name] = f(env)
        return [f(env) for f in self.outputs]


@dataclass(frozen=True)
class Parsed:
    """A checked formula: its SymPy expression and what it is made of."""

    text: str
    tree: ast.Expression
    expr: object
    coefficients: tuple[str, ...]  # in order of first appearance
    variables: tuple[str, ...]     # formula names (N, D, ...) it uses


def parse(text: str) -> Parsed:
    """Check and parse a law formula; TunerError naming the offending part."""
    tree = check(text)
    symbols: dict = {}
    expr = _to_sympy(tree, symbols)
    names = [n for n in symbols]  # insertion order: order of first appearance
    free = {s.name for s in expr.free_symbols}
    coefficients = tuple(n for n in names if n not in VARIABLES and n in free)
    variables = tuple(n for n in names if n in VARIABLES and n in free)
    if not coefficients:
        raise TunerError(f"law formula {text!r}: no coefficient to fit (every name is a "
                         f"variable: {', '.join(VARIABLES)})")
    return Parsed(text.strip(), tree, expr, coefficients, variables)


# -- structure read off the formula -------------------------------------------------------------

def linear_coefficients(p: Parsed) -> tuple[tuple[str, ...], dict[str, str]]:
    """(coefficients the law is jointly linear in, {coefficient: exponent} for those it is
    linear in only as coefficient**exponent, like Eq 3's aD in (aD/D)**bD).

    Greedy in formula order: a coefficient joins when the second derivative by it and by
    every coefficient already chosen is zero."""
    import sympy as sp

    syms = {s.name: s for s in p.expr.free_symbols}
    chosen: list[str] = []
    for name in p.coefficients:
        c = syms[name]
        d1 = sp.diff(p.expr, c)
        if d1 == 0 or sp.diff(d1, c) != 0:
            continue
        if all(sp.diff(d1, syms[o]) == 0 for o in chosen):
            chosen.append(name)
    power: dict[str, str] = {}
    for name in p.coefficients:
        if name in chosen:
            continue
        k = _power_exponent(p.expr, syms, name, chosen)
        if k is not None:
            power[name] = k
            chosen.append(name)
    return tuple(n for n in p.coefficients if n in chosen), power


def _power_exponent(expr, syms: dict, name: str, chosen: list[str]) -> str | None:
    """The exponent k when ``expr`` is linear in name**k (and jointly with ``chosen``)."""
    import sympy as sp

    c = syms[name]
    candidates = []
    for node in sp.preorder_traversal(expr):
        if node.is_Pow and node.args[1].is_Symbol and node.args[1].name not in VARIABLES \
                and c in node.args[0].free_symbols and node.args[1] != c:
            candidates.append(node.args[1])
    w = sp.Symbol("_w")
    for k in dict.fromkeys(candidates):
        sub = expr.subs(c, w ** (1 / k))
        sub = sp.powdenest(sp.expand_power_base(sub, force=True), force=True)
        if c in sub.free_symbols:
            continue
        d1 = sp.diff(sub, w)
        if d1 != 0 and sp.diff(d1, w) == 0 and w not in d1.free_symbols \
                and all(sp.diff(d1, syms[o]) == 0 for o in chosen):
            return k.name
    return None


def linear_form(p: Parsed, linear: Sequence[str], power: Mapping[str, str]):
    """SymPy (offset, [column per linear coefficient]) with L = offset + sum w_j column_j,
    where w_j is the coefficient, or coefficient**exponent for the ``power`` ones."""
    import sympy as sp

    syms = {s.name: s for s in p.expr.free_symbols}
    weights = {n: sp.Symbol(f"_w{i}") for i, n in enumerate(linear)}
    expr = p.expr
    for n in linear:
        target = weights[n] ** (1 / syms[power[n]]) if n in power else weights[n]
        expr = expr.subs(syms[n], target)
    if power:
        expr = sp.powdenest(sp.expand_power_base(expr, force=True), force=True)
    columns = [sp.diff(expr, weights[n]) for n in linear]
    offset = expr.subs({w: 0 for w in weights.values()})
    return offset, columns


def unidentified(p: Parsed, constants: Mapping[str, float]) -> list[str]:
    """Coefficients the data cannot identify when the variables in ``constants`` (formula
    names, e.g. ``{"S": 0.0}``) take one value in every run.

    With those values put in, every part of the formula that no longer depends on the data
    is a number: a bare coefficient (possibly times a constant) survives as that number when
    nothing else merges with it; every other coefficient inside such parts is lost, unless it
    also appears in a part that still varies with the data."""
    import sympy as sp

    syms = {s.name: s for s in p.expr.free_symbols}
    expr = p.expr.subs({syms[v]: sp.Float(x, 17) for v, x in constants.items() if v in syms})
    data = {s for s in expr.free_symbols if s.name in VARIABLES}
    lost: set[str] = set()
    alive: set[str] = set()

    def names(e) -> set[str]:
        return {s.name for s in e.free_symbols if s.name not in VARIABLES}

    def bare(e) -> str | None:
        """The coefficient ``e`` is, up to a numeric factor, or None."""
        c, rest = e.as_coeff_Mul()
        return rest.name if rest.is_Symbol and rest.name not in VARIABLES else None

    def walk(e) -> None:
        if not (e.free_symbols & data):
            return
        if not (e.is_Add or e.is_Mul):  # a power or function of the data
            for a in e.args:
                if a.free_symbols & data:
                    walk(a)
                else:  # e.g. an exponent: it shapes the data's effect, so it is identified
                    alive.update(names(a))
            return
        for a in e.args:
            walk(a)
        for a in (a for a in e.args if not (a.free_symbols & data)):
            b = bare(a)
            if b is not None:
                alive.add(b)
            elif a.is_Add and any(bare(t) for t in a.args):
                keep = next(bare(t) for t in a.args if bare(t))
                alive.add(keep)
                lost.update(names(a) - {keep})
            else:
                lost.update(names(a))

    top = sp.Add.make_args(expr)
    numbers = [t for t in top if not (t.free_symbols & data)]
    # Numbers added at the top merge into one: a bare coefficient among them stands for it.
    order = {n: i for i, n in enumerate(p.coefficients)}
    keep = min((bare(t) for t in numbers if bare(t)), key=order.get, default=None)
    for t in numbers:
        lost.update(names(t))
    if keep:
        alive.add(keep)
    for t in top:
        walk(t)
    gone = set(p.coefficients) - names(expr)
    return [n for n in p.coefficients if n in gone or (n in lost and n not in alive)]


def derivative_code(p: Parsed, linear: Sequence[str], power: Mapping[str, str]) -> dict:
    """What ``Compiled`` runs, from SymPy: the gradient and the linear form as plain trees
    (JSON, kept in the law cache)."""
    import sympy as sp

    syms = {s.name: s for s in p.expr.free_symbols}
    offset, columns = linear_form(p, linear, power)
    return {"coefficients": list(p.coefficients), "linear": list(linear),
            "gradient": program_code([sp.diff(p.expr, syms[n]) for n in p.coefficients]),
            "linear_form": program_code([offset, *columns])}


class Compiled:
    """numpy functions of a law: prediction, gradient, linear form (``derivative_code``)."""

    def __init__(self, text: str, code: Mapping):
        self.coefficients = tuple(code["coefficients"])
        _check_code(text, code)
        self._value = value_function(text)
        self._grad = Program(code["gradient"])
        self._linear = Program(code["linear_form"])
        self.linear = tuple(code["linear"])

    def value(self, env: dict) -> np.ndarray:
        return self._value(env)

    def value_and_grad(self, env: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self._value(env), self.gradient(env)

    def gradient(self, env: dict) -> dict[str, np.ndarray]:
        return dict(zip(self.coefficients, self._grad(env)))

    def gradient_rows(self, env: dict, n: int) -> Callable[[slice], dict[str, np.ndarray]]:
        """The gradient on a block of rows, as a function of the block: ``env`` (whose Terms,
        if any, are bound to it) sliced, per-run values (length ``n``) only. Values that do
        not vary by run come back as scalars."""
        per_run = [k for k, v in env.items() if k != TERMS and np.ndim(v) and
                   np.shape(v)[-1] == n]
        terms = env.get(TERMS)

        def block(rows: slice) -> dict[str, np.ndarray]:
            part = dict(env)
            for k in per_run:
                part[k] = env[k][..., rows]
            if terms is not None:
                part[TERMS] = terms.rows(rows)
            return self.gradient(part)
        return block

    def linear_parts(self, env: dict) -> tuple[np.ndarray, list[np.ndarray]]:
        out = self._linear(env)
        return out[0], out[1:]


@dataclass(frozen=True)
class Analysis:
    """What SymPy reads off a formula, computed once per law."""

    linear: tuple[str, ...]
    power: dict[str, str]
    exponents: frozenset[str]  # coefficients that appear in an exponent
    irreducible: tuple[str, ...]  # linear coefficients whose term does not shrink with N, D

    @classmethod
    def checked(cls, text: str, data: Mapping) -> "Analysis":
        """From the JSON the law cache keeps; TunerError unless it fits the formula."""
        own = set(names(text)[0])
        linear, power = data["linear"], data["power"]
        exponents, irreducible = data["exponents"], data["irreducible"]
        if not (all(isinstance(x, list) for x in (linear, exponents, irreducible))
                and isinstance(power, dict) and set(linear) <= own
                and set(exponents) <= own and set(irreducible) <= set(linear)
                and set(power) <= set(linear) and set(power.values()) <= own):
            raise TunerError("law cache: an analysis that does not fit its formula")
        return cls(tuple(linear), dict(power), frozenset(exponents), tuple(irreducible))


def analyse(p: Parsed) -> Analysis:
    import sympy as sp

    linear, power = linear_coefficients(p)
    exponents = set()
    for node in sp.preorder_traversal(p.expr):
        if node.is_Pow:
            exponents |= {s.name for s in node.args[1].free_symbols
                          if s.name not in VARIABLES}
        if isinstance(node, sp.exp):
            exponents |= {s.name for s in node.args[0].free_symbols if s.name not in VARIABLES}
    syms = {s.name: s for s in p.expr.free_symbols}
    scale_vars = {syms[v] for v in ("N", "N_total", "D") if v in syms}
    irreducible = tuple(n for n in linear if n not in power
                        and not (sp.diff(p.expr, syms[n]).free_symbols & scale_vars))
    return Analysis(linear, power, frozenset(exponents), irreducible)
