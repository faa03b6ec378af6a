"""A Griffe extension: agora's docstrings, written in the house style, as Markdown for the site.

agora's docstrings follow PyTorch Geometric's style (``../shared/STYLE.md``): Google sections
with reStructuredText inside them. mkdocstrings renders Markdown, so before rendering this
turns, in every docstring:

- ``.. math::`` blocks into ``$$ ... $$`` (``pymdownx.arithmatex``; ``docs/hooks.py`` renders
  them to MathML when the site is built), several lines into a table aligned at each ``&``;
- ``:math:`x``` into ``$x$``;
- ``:class:`~agora.graph.Graph```, ``:meth:`build```, ... into links to the API pages (as
  optional cross-references: a name that is not documented stays plain code);
- ``Example:`` into ``Examples:``, the title Griffe reads as doctest examples;
- a paragraph ending in ``::`` (a literal block follows) into one ending in ``:``.

The docstrings themselves stay as they are. mkdocs.yml loads this file by path.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|attr|data|mod|exc|obj):`(?P<body>[^`]+)`")
MATH_ROLE = re.compile(r":math:`(?P<body>[^`]+)`")
MATH_BLOCK = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*$")
EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.M)
LITERAL = re.compile(r"(?<=\S)::[ \t]*$", re.M)
LONE_LITERAL = re.compile(r"^[ \t]*::[ \t]*$", re.M)


class RstToMarkdown(griffe.Extension):
    """Rewrites each object's docstring once the whole package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, obj)


def _walk(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias and member.parent is obj:
            yield from _walk(member)


def convert(text: str, scope: griffe.Object | None = None) -> str:
    """One docstring, from reStructuredText-in-Google-sections to Markdown."""
    text = _math_blocks(text)
    text = MATH_ROLE.sub(lambda m: f"${m['body']}$", text)
    text = ROLE.sub(lambda m: _reference(m["body"], scope), text)
    text = EXAMPLE.sub(lambda m: f"{m['indent']}Examples:", text)
    text = LONE_LITERAL.sub("", text)
    return LITERAL.sub(":", text)


def _math_blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        start = MATH_BLOCK.match(lines[i])
        if not start:
            out.append(lines[i])
            i += 1
            continue
        indent = start["indent"]
        body: list[str] = []
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        math = textwrap.dedent("\n".join(body)).strip()
        if "\\\\" in math:  # several lines: one table row each, as TeX's align sets them
            math = f"\\begin{{array}}{{{_columns(math)}}}\n" + math + "\n\\end{array}"
        block = ["", "$$", *math.splitlines(), "$$", ""]
        out.extend(indent + line if line else "" for line in block)
    return "\n".join(out)


def _columns(math: str) -> str:
    """The array columns of multi-line math: centred lines without ``&``, else right and left
    alternately at each ``&``, as TeX's ``align`` sets them (``s &= a && x``: ``rlrl``)."""
    columns = 1 + max(line.count("&") for line in math.split("\\\\"))
    return "c" if columns == 1 else ("rl" * columns)[:columns]


def _reference(body: str, scope: griffe.Object | None) -> str:
    """``~a.b.C`` -> ``C`` linked to ``a.b.C``; ``title <target>`` -> ``title``; resolved
    relative to the docstring's object, as Sphinx does."""
    explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", body)
    if explicit:
        title, target = explicit["title"], explicit["target"]
    else:
        target = body.lstrip("~")
        title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
    path = _resolve(target, scope)
    code = f"<code>{title}</code>"
    return f'<autoref identifier="{path}" optional>{code}</autoref>' if path else f"`{title}`"


def _resolve(target: str, scope: griffe.Object | None) -> str | None:
    if target.startswith("agora."):
        return target
    first, _, rest = target.partition(".")
    while scope is not None:
        if first in scope.members:
            member = scope.members[first]
            base = member.target_path if member.is_alias else member.path
            return f"{base}.{rest}" if rest else base
        scope = scope.parent
    return None
