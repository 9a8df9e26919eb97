"""LaTeX for a rendered table that compiles as printed: every special character escaped (``$ _ % & #
~ ^ \\``, ``--``, backticks, non-ASCII), the paper's layouts (dataset blocks with ``\\multirow``, Table 7
as two stacked halves), ``\\resizebox`` only when the table is wider than the text, and the footnotes as a
separate, marked block a user can drop. Needs ``\\usepackage{booktabs,xcolor,graphicx,multirow}``."""
from __future__ import annotations

import math
import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .render import Rendered

PREAMBLE = "\\usepackage{booktabs,xcolor,graphicx,multirow}"

_CHARS = {
    "\\": "$\\backslash$", "{": "\\{", "}": "\\}", "$": "\\$", "&": "\\&", "#": "\\#", "%": "\\%",
    "_": "\\_", "~": "\\~{}", "^": "\\^{}", "<": "$<$", ">": "$>$",
    "|": "$|$", "`": "\\textasciigrave{}", "\"": "''",
    "±": "$\\pm$", "↓": "$\\downarrow$", "↑": "$\\uparrow$", "→": "$\\rightarrow$", "←": "$\\leftarrow$",
    "✓": "$\\surd$", "✗": "$\\times$", "×": "$\\times$", "—": "--", "–": "--", "−": "$-$", "Δ": "$\\Delta$",
    "≤": "$\\le$", "≥": "$\\ge$", "≈": "$\\approx$", "…": "\\ldots{}", "·": "$\\cdot$", "°": "$^{\\circ}$",
    "µ": "$\\mu$", "μ": "$\\mu$", "σ": "$\\sigma$", "ℓ": "$\\ell$", "’": "'", "‘": "`", "“": "``", "”": "''",
    "\u00a0": "~",
}
#: label patterns printed as math: the paper's l_adv^D_L1 column heads, l_adv-r-k rows, D_SL / D_HL
_MATH = re.compile(r"(?<![A-Za-z])l_adv\^D_([A-Z]\d)|(?<![A-Za-z])l_adv(?![A-Za-z])|(?<![A-Za-z])D_([A-Z]{2})(?![A-Za-z])")
_CODE = re.compile(r"`([^`]+)`")
_MARK = re.compile(r"\[(\d+)\]$")


def _char(c: str) -> str:
    if c in _CHARS:
        return _CHARS[c]
    if ord(c) < 128:
        return c
    plain = unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode()
    return "".join(_CHARS.get(x, x) for x in plain) if plain else "?"


def _plain(s: str, breaks: bool) -> str:
    long_word = [False] * len(s)
    if breaks:  # long paths and option lists may wrap after / _ = , . :
        for m in re.finditer(r"\S{16,}", s):
            long_word[m.start():m.end() - 1] = [True] * (m.end() - 1 - m.start())
    out = []
    for i, c in enumerate(s):
        out.append("-{}" if c == "-" and s[i + 1:i + 2] == "-" else _char(c))
        if long_word[i] and c in "/_=,.:":
            out.append("\\allowbreak{}")
    return "".join(out)


def tex(s: str, breaks: bool = False) -> str:
    """``s`` as LaTeX text: specials and non-ASCII escaped, ``--`` kept as two hyphens, `code` spans in
    ``\\texttt``, the paper's symbols (l_adv, D_SL) as math; ``breaks`` allows line breaks after ``/ _
    = , . :`` inside words of 16 characters or more (footnotes)."""
    out, pos = [], 0
    for m in _CODE.finditer(s):
        out.append(_math(s[pos:m.start()], breaks))
        out.append("\\texttt{" + _plain(m.group(1), breaks) + "}")
        pos = m.end()
    out.append(_math(s[pos:], breaks))
    return "".join(out)


def _math(s: str, breaks: bool) -> str:
    out, pos = [], 0
    for m in _MATH.finditer(s):
        out.append(_plain(s[pos:m.start()], breaks))
        if m.group(1):
            out.append(f"$l_{{adv}}^{{D_{{\\mathrm{{{m.group(1)}}}}}}}$")
        elif m.group(2):
            out.append(f"$D_{{\\mathrm{{{m.group(2)}}}}}$")
        else:
            out.append("$l_{adv}$")
        pos = m.end()
    out.append(_plain(s[pos:], breaks))
    return "".join(out)


def _cell(text: str, rank: int) -> str:
    mark = _MARK.search(text)
    body = tex(text[:mark.start()] if mark else text)
    if rank:
        body = ("\\textcolor{red}{%s}", "\\textcolor{blue}{%s}", "\\textbf{%s}")[rank - 1] % body
    return body + (f"\\textsuperscript{{{mark.group(1)}}}" if mark else "")


def _line(cells: list[str]) -> str:
    return " & ".join(cells) + " \\\\"


def render_latex(r: Rendered, notes: list[tuple[str, str]]) -> str:
    """The ``table`` environment for ``r``; ``notes`` are (mark, text) lines of the footnote block (mark
    ``""`` for the stated substitutions and conventions)."""
    spec = r.spec
    n_data = len(spec.columns)
    n_lead = len(r.header) - n_data
    lines = [f"% {spec.title}: requires {PREAMBLE}", "\\begin{table}[t]", "\\centering",
             f"\\caption{{{tex(spec.title)}. The best, second best and third best results are in "
             "\\textcolor{red}{red}, \\textcolor{blue}{blue} and \\textbf{bold}.}",
             "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%"]
    if len(r.rows) == 1 and n_data >= 6:  # Table 7's layout: the method columns as two stacked halves
        half = math.ceil(n_data / 2)
        lines += ["\\begin{tabular}{" + "l" * n_lead + "c" * half + "}", "\\toprule"]
        for k, start in enumerate(range(0, n_data, half)):
            cols = slice(n_lead + start, n_lead + min(start + half, n_data))
            pad = [""] * (half - (cols.stop - cols.start))
            if k:
                lines.append("\\midrule")
            lines.append(_line([tex(h) for h in r.header[:n_lead]] + [tex(h) for h in r.header[cols]] + pad))
            lines.append("\\midrule")
            lines.append(_line([_cell(t, 0) for t in r.rows[0][:n_lead]]
                               + [_cell(t, k) for t, k in zip(r.rows[0][cols], r.rank[0][cols])] + pad))
    else:
        lines += ["\\begin{tabular}{" + "l" * n_lead + "c" * n_data + "}", "\\toprule",
                  _line([tex(h) for h in r.header]), "\\midrule"]
        grouped = bool(spec.groups)
        for i, (row, rk) in enumerate(zip(r.rows, r.rank)):
            cells = [_cell(t, k) for t, k in zip(row, rk)]
            if grouped:
                first = i == 0 or r.rows[i - 1][0] != row[0]
                if first and i:
                    lines.append("\\midrule")
                span = 1
                while first and i + span < len(r.rows) and r.rows[i + span][0] == row[0]:
                    span += 1
                cells[0] = (f"\\multirow{{{span}}}{{*}}{{{tex(row[0])}}}" if span > 1 else tex(row[0])) if first else ""
            lines.append(_line(cells))
    lines += ["\\bottomrule", "\\end{tabular}}"]
    if notes:
        lines += ["% --- footnotes: delete from here to `end footnotes` to print the table without them ---",
                  "\\par\\smallskip", "\\begin{minipage}{\\linewidth}\\footnotesize\\raggedright"]
        lines += [(f"\\textsuperscript{{{k}}}~" if k else "") + tex(n, breaks=True) + ("\\par" if i + 1 < len(notes) else "")
                  for i, (k, n) in enumerate(notes)]
        lines += ["\\end{minipage}", "% --- end footnotes ---"]
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def document(tables: list[str]) -> str:
    """A minimal article (letter paper, 1 inch margins) that typesets ``tables``: the page the compile
    check uses."""
    return ("\\documentclass{article}\n\\usepackage[margin=1in]{geometry}\n" + PREAMBLE + "\n\\begin{document}\n"
            + "\n\\clearpage\n".join(tables) + "\n\\end{document}\n")
