"""Tables as text: Markdown (pipe tables) and LaTeX (booktabs), shared by the reports and the
one-off comparison tools."""

from __future__ import annotations

__all__ = ["md_table", "tex_escape", "tex_table"]


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown pipe table of ``header`` and ``rows`` (cells already text), newline-ended."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def tex_escape(s: str) -> str:
    """``s`` with LaTeX's special characters escaped and the reports' Unicode signs (×, Δ, ±,
    en dash, minus) spelled in LaTeX."""
    return (
        str(s)
        .replace("\\", r"\textbackslash{}")
        .replace("&", r"\&")
        .replace("%", r"\%")
        .replace("_", r"\_")
        .replace("#", r"\#")
        .replace("–", "--")
        .replace("×", r"$\times$")
        .replace("Δ", r"$\Delta$")
        .replace("−", "-")
        .replace("±", r"$\pm$")
    )


def tex_table(
    header: list[str], rows: list[list[str]], caption: str | None, label: str, rules_every: int = 0
) -> str:
    """A LaTeX ``table`` (booktabs; two left-aligned columns, the rest right-aligned) labelled
    ``tab:<label>``, with a ``\\midrule`` every ``rules_every`` rows when given."""
    cols = "ll" + "r" * (len(header) - 2)
    out = [
        r"\begin{table}[t]",
        r"\centering",
        r"\scriptsize",
        r"\setlength{\tabcolsep}{3pt}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(tex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    for i, r in enumerate(rows):
        if rules_every and i and i % rules_every == 0:
            out.append(r"\midrule")
        out.append(" & ".join(tex_escape(c) for c in r) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        out.append(rf"\caption{{{tex_escape(caption)}}}")
    out += [rf"\label{{tab:{label}}}", r"\end{table}", ""]
    return "\n".join(out)
