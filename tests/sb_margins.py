"""Tolerance audit (issue 26): record how close every passing numeric check came to its limit.

Enabled by ``pytest --record-margins FILE`` (``make tolerance-audit`` runs the suite under each ISA and
thread count and merges the files). Two sources are recorded, one JSON line each:

- comparisons in plain ``assert`` statements (``assert err <= 1e-5``, ``assert frac < 0.02``), read from
  pytest's rewritten-assert explanation through the ``pytest_assertion_pass`` hook;
- ``torch.testing.assert_close`` and ``numpy.testing.assert_allclose`` calls, wrapped to record the
  largest ``|actual - expected| / (atol + rtol |expected|)``.

A record's ``ratio`` is observed / allowed: 1.0 is the limit, so a tolerance with ratio 0.9 on one machine
is the coin toss that issue 26 found. Nothing here changes what a test asserts.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SIDE = re.compile(rf"^(?:tensor\(|np\.float\d*\(|array\()?\s*({_NUM})\s*(?:,[^)]*)?\)?$")
_CMP = re.compile(r"^(?P<left>.+?) (?P<op><=|<|>=|>) (?P<right>.+?)$")


_WRAPPED = re.compile(rf"(?:tensor|np\.float\d*|array|float)\(\s*({_NUM})\s*(?:,[^()]*)?\)")


def _number(text: str) -> float | None:
    """A number, or simple arithmetic of numbers (``(0.001 * tensor(0.52))``) as pytest shows a side."""
    m = _SIDE.match(text.strip())
    if m:
        return float(m.group(1))
    plain = _WRAPPED.sub(lambda w: w.group(1), text.strip())
    if not re.fullmatch(r"[\d.eE+\-*/() ]+", plain):
        return None
    import ast

    try:
        tree = ast.parse(plain, mode="eval")
    except SyntaxError:
        return None
    ok = all(isinstance(n, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub, ast.Mult,
                            ast.Div, ast.USub, ast.UAdd)) for n in ast.walk(tree))
    try:
        return float(eval(compile(tree, "<margin>", "eval"))) if ok else None   # numbers and + - * / only
    except (ZeroDivisionError, OverflowError, ValueError):
        return None


def comparison(expl: str) -> dict | None:
    """``{'op', 'observed', 'limit', 'ratio'}`` from the first line of a passing assert's explanation
    (``tensor(1.2e-06) <= 1e-05``), or None when it is not a comparison of two numbers."""
    first = expl.splitlines()[0] if expl else ""
    m = _CMP.match(first.strip())
    if not m:
        return None
    left, right = _number(m.group("left")), _number(m.group("right"))
    if left is None or right is None:
        return None
    op = m.group("op")
    if op in ("<", "<="):
        observed, limit = left, right
    else:
        observed, limit = right, left      # `x > lo`: lo plays the observed, x the limit
    ratio = (abs(observed) / abs(limit)) if limit != 0 else (0.0 if observed == 0 else float("inf"))
    if op in (">", ">=") and (observed < 0 or limit < 0):
        return None                        # a signed lower bound is no tolerance
    return {"op": op, "observed": observed, "limit": limit, "ratio": ratio}


class Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.item = "?"
        self._f = open(path, "a", encoding="utf-8")

    def write(self, rec: dict) -> None:
        rec["test"] = self.item
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()

    def unmeasured(self, where: str, exc: Exception) -> None:
        """A passing check whose margin could not be computed (listed apart in the audit's report)."""
        self.write({"where": where, "kind": "unmeasured", "error": f"{type(exc).__name__}: {exc}"[:200]})

    def close(self) -> None:
        self._f.close()


def _caller_line() -> str:
    f = sys._getframe(2)
    while f is not None:
        name = f.f_code.co_filename
        if "/tests/" in name and not name.endswith("sb_margins.py"):
            return f"{Path(name).name}:{f.f_lineno}"
        f = f.f_back
    return "?"


def wrap_close_functions(rec: Recorder) -> None:
    """Record the worst ratio of each passing ``assert_close`` / ``assert_allclose`` call."""
    import numpy as np
    import torch

    t_close = torch.testing.assert_close
    n_close = np.testing.assert_allclose

    def torch_close(actual, expected, *a, rtol=None, atol=None, **kw):
        t_close(actual, expected, *a, rtol=rtol, atol=atol, **kw)
        try:
            if isinstance(actual, torch.Tensor) and actual.is_floating_point() and actual.numel():
                e = torch.as_tensor(expected, dtype=actual.dtype)
                if rtol is None or atol is None:
                    from torch.testing._comparison import default_tolerances
                    rtol, atol = default_tolerances(actual, e)
                allowed = atol + rtol * e.abs().double()
                err = (actual.double() - e.double()).abs()
                ratio = float((err / allowed.clamp_min(1e-300)).max())
                rec.write({"where": _caller_line(), "kind": "assert_close", "observed": float(err.max()),
                           "limit": float(allowed.min()), "ratio": ratio})
        except Exception as exc:      # never let the audit change a test's outcome; say what it could not read
            rec.unmeasured(_caller_line(), exc)

    def np_close(actual, desired, rtol=1e-7, atol=0, *a, **kw):
        n_close(actual, desired, rtol, atol, *a, **kw)
        try:
            x, y = np.asarray(actual, dtype=np.float64), np.asarray(desired, dtype=np.float64)
            err = np.abs(x - y)
            allowed = atol + rtol * np.abs(y)
            ratio = float(np.max(err / np.maximum(allowed, 1e-300))) if err.size else 0.0
            rec.write({"where": _caller_line(), "kind": "assert_allclose", "observed": float(err.max(initial=0)),
                       "limit": float(np.min(allowed, initial=np.inf)), "ratio": ratio})
        except Exception as exc:
            rec.unmeasured(_caller_line(), exc)

    torch.testing.assert_close = torch_close
    np.testing.assert_allclose = np_close


class MarginPlugin:
    """The pytest plugin behind ``--record-margins FILE`` (registered by conftest.py only with that option:
    pytest formats a passing assert's explanation only while a ``pytest_assertion_pass`` hook exists)."""

    def __init__(self, path: Path) -> None:
        self.rec = Recorder(path)
        wrap_close_functions(self.rec)

    def pytest_runtest_setup(self, item) -> None:
        self.rec.item = item.nodeid

    def pytest_assertion_pass(self, item, lineno, orig, expl) -> None:
        got = comparison(expl)
        if got is not None:
            got.update(where=f"{Path(str(item.fspath)).name}:{lineno}", kind="assert", expr=orig)
            self.rec.write(got)

    def pytest_unconfigure(self, config) -> None:
        self.rec.close()
