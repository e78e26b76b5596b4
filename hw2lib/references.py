"""Read the chapter's BibTeX file, format author-year citations and the reference list.

Pages cite with Pandoc's syntax: ``[@key]``, several keys as
``[@key1; @key2]``, a locator after a comma (``[@key, Theorem 2]``) and
``[-@key]`` for the year alone, when the sentence already names the authors.
:func:`format_citation` turns one such group into "(He et al., 2016a)"
links; the MkDocs hook applies it to every page.

The parser covers the BibTeX that reference managers export: ``@type{key,
field = {value}, field = "value", field = 1234}`` with nested braces.
``@comment``, ``@preamble`` and ``@string`` blocks are skipped, and string
macros are not expanded.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

# A citation group: "[@key]", "[@a; @b]", "[@key, p. 3]", "[-@key]".
CITATION = re.compile(r"\[(-?@[\w:.\-]+(?:,[^;\]\[]*)?(?:;\s*-?@[\w:.\-]+(?:,[^;\]\[]*)?)*)\]")
CITED_KEY = re.compile(r"(-?)@([\w:.\-]+)(?:,\s*([^;]*))?")

SKIPPED_ENTRY_TYPES = {"comment", "preamble", "string"}

# LaTeX that appears in exported titles and names, mapped to Unicode.
LATEX_REPLACEMENTS = (
    ("---", "\u2014"),
    ("--", "\u2013"),
    ("\\&", "&"),
    ("~", "\u00a0"),
    ('\\"o', "\u00f6"),
    ('\\"u', "\u00fc"),
    ('\\"a', "\u00e4"),
    ("\\'e", "\u00e9"),
    ("\\`e", "\u00e8"),
    ("\\'a", "\u00e1"),
    ("\\c{c}", "\u00e7"),
)


class BibliographyError(ValueError):
    """The BibTeX file is malformed, or a page cites a key it does not contain."""


@dataclass(frozen=True)
class Author:
    first: str
    von: str
    last: str

    @property
    def surname(self) -> str:
        """The surname as cited, with its particle: "van Laarhoven"."""
        return f"{self.von} {self.last}".strip()

    def initials(self) -> str:
        parts = re.split(r"([\s\-]+)", self.first)
        result = []
        for part in parts:
            if not part.strip() or set(part) <= {" ", "-"}:
                result.append("-" if "-" in part else " ")
            else:
                result.append(f"{part[0]}.")
        return "".join(result).replace(" -", "-").strip()


@dataclass
class Entry:
    """One BibTeX entry with its fields (lower-case names, LaTeX already converted)."""

    key: str
    entry_type: str
    fields: dict[str, str]
    authors: list[Author] = field(default_factory=list)
    label: str = ""

    @property
    def year(self) -> str:
        return self.fields.get("year", "n.d.")

    def author_label(self) -> str:
        """Return the author part of a citation: "Baldi & Hornik", "He et al."."""
        names = [author.surname for author in self.authors]
        if len(names) == 1:
            return names[0]
        if len(names) == 2:
            return f"{names[0]} & {names[1]}"
        return f"{names[0]} et al."


def _latex_to_text(value: str) -> str:
    for latex, text in LATEX_REPLACEMENTS:
        value = value.replace(latex, text)
    # Braces only protect capitalization in BibTeX; the text keeps its case.
    value = value.replace("{", "").replace("}", "")
    return re.sub(r"\s+", " ", value).strip()


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` where it is outside braces, case-insensitively for words."""
    parts, depth, start, index = [], 0, 0, 0
    pattern = re.compile(separator, re.I)
    while index < len(text):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif depth == 0:
            match = pattern.match(text, index)
            if match:
                parts.append(text[start:index])
                index = start = match.end()
                continue
        index += 1
    parts.append(text[start:])
    return parts


def parse_name(raw: str) -> Author:
    """Parse one BibTeX name, "Last, First" or "First von Last"."""
    pieces = [piece.strip() for piece in _split_top_level(raw.strip(), ",")]
    if len(pieces) >= 2:
        words = pieces[0].split()
        von = [word for word in words[:-1] if word[:1].islower()]
        last = " ".join(words[len(von) :])
        return Author(
            first=_latex_to_text(pieces[-1]), von=" ".join(von), last=_latex_to_text(last)
        )
    words = _split_top_level(pieces[0], r"\s+")
    words = [word for word in words if word]
    if len(words) == 1:
        return Author(first="", von="", last=_latex_to_text(words[0]))
    # "First von Last": the particle is the run of lower-case words before the surname.
    von_start = next(
        (index for index, word in enumerate(words[:-1]) if word[:1].islower()), len(words) - 1
    )
    first = " ".join(words[:von_start])
    von = " ".join(word for word in words[von_start:-1])
    return Author(
        first=_latex_to_text(first), von=_latex_to_text(von), last=_latex_to_text(words[-1])
    )


def _read_value(text: str, index: int, key: str) -> tuple[str, int]:
    """Read one field value starting at ``index``; return it and the index after it."""
    if text[index] == "{":
        end = _closing_brace(text, index)
        if end is None:
            raise BibliographyError(f"entry {key!r}: unbalanced braces in a field value")
        return text[index + 1 : end], end + 1
    if text[index] == '"':
        end = index + 1
        depth = 0
        while end < len(text):
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
            elif text[end] == '"' and depth == 0:
                return text[index + 1 : end], end + 1
            end += 1
        raise BibliographyError(f"entry {key!r}: unterminated quoted field value")
    match = re.compile(r"[\w.\-]+").match(text, index)
    if not match:
        raise BibliographyError(
            f"entry {key!r}: invalid field value near {text[index : index + 30]!r}"
        )
    return match.group(0), match.end()


def _closing_brace(text: str, start: int) -> int | None:
    """Return the index of the brace that closes the one at ``start``, or None if none does."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return None


def _entry_body(text: str, start: int) -> tuple[str, int]:
    """Return the text between the entry's opening brace at ``start`` and its closing brace."""
    end = _closing_brace(text, start)
    if end is None:
        raise BibliographyError(f"unbalanced braces in the entry starting at offset {start}")
    return text[start + 1 : end], end + 1


def parse_bibtex(text: str) -> dict[str, Entry]:
    """Parse BibTeX text into entries keyed by citation key, in file order."""
    entries: dict[str, Entry] = {}
    for match in re.finditer(r"@(\w+)\s*\{", text):
        entry_type = match.group(1).lower()
        body, _ = _entry_body(text, match.end() - 1)
        if entry_type in SKIPPED_ENTRY_TYPES:
            continue
        key, _, rest = body.partition(",")
        key = key.strip()
        if not key:
            raise BibliographyError(f"a @{entry_type} entry has no citation key")
        if key in entries:
            raise BibliographyError(f"duplicate citation key {key!r}")
        fields: dict[str, str] = {}
        index = 0
        field_name = re.compile(r"\s*([\w\-]+)\s*=\s*")
        while True:
            while index < len(rest) and rest[index] in " \t\r\n,":
                index += 1
            if index >= len(rest):
                break
            name = field_name.match(rest, index)
            if not name:
                raise BibliographyError(
                    f"entry {key!r}: expected 'name = value' near {rest[index : index + 30]!r}"
                )
            value, index = _read_value(rest, name.end(), key)
            fields[name.group(1).lower()] = value
        authors = [
            parse_name(raw)
            for raw in _split_top_level(fields.get("author", ""), r"\s+and\s+")
            if raw.strip()
        ]
        converted = {name: _latex_to_text(value) for name, value in fields.items()}
        entries[key] = Entry(key=key, entry_type=entry_type, fields=converted, authors=authors)
    _assign_labels(entries)
    return entries


def _assign_labels(entries: dict[str, Entry]) -> None:
    """Set each entry's "Authors, Year" label, adding a, b, ... where two would read alike."""
    groups: dict[tuple[str, str], list[Entry]] = {}
    for entry in entries.values():
        if not entry.authors:
            raise BibliographyError(f"entry {entry.key!r} has no author field")
        groups.setdefault((entry.author_label(), entry.year), []).append(entry)
    for (authors, year), group in groups.items():
        group.sort(key=lambda entry: entry.fields.get("title", "").lower())
        for position, entry in enumerate(group):
            suffix = chr(ord("a") + position) if len(group) > 1 else ""
            entry.label = f"{authors}, {year}{suffix}"


def load_bibliography(path: Path) -> dict[str, Entry]:
    """Read and parse a ``.bib`` file; errors name the file."""
    try:
        return parse_bibtex(path.read_text(encoding="utf-8"))
    except BibliographyError as error:
        raise BibliographyError(f"{path}: {error}") from None


def _cited_entries(
    group: str, entries: dict[str, Entry], *, page: str
) -> list[tuple[str, str, Entry]]:
    """Parse one citation group into ``(key, link text, entry)`` triples.

    Raises :class:`BibliographyError` naming the key and ``page`` for a key
    that the bibliography lacks.
    """
    cited = []
    for item in group.split(";"):
        match = CITED_KEY.fullmatch(item.strip())
        if match is None:
            raise BibliographyError(f"{page}: invalid citation [{group}]")
        suppress_author, key, locator = match.groups()
        entry = entries.get(key)
        if entry is None:
            raise BibliographyError(
                f"{page}: unknown citation key {key!r}; add it to docs/references.bib "
                "or fix the key"
            )
        text = entry.label.rpartition(", ")[2] if suppress_author else entry.label
        if locator:
            text += f", {locator.strip()}"
        cited.append((key, text, entry))
    return cited


def format_citation(group: str, entries: dict[str, Entry], href_for_key, *, page: str) -> str:
    """Return the HTML for one citation group, the text between ``[`` and ``]``.

    ``href_for_key`` maps a key to the URL of its reference-list entry.
    Raises :class:`BibliographyError` naming the key and ``page`` for a key
    that the bibliography lacks.
    """
    parts = []
    for key, text, entry in _cited_entries(group, entries, page=page):
        title = html.escape(entry.fields.get("title", ""), quote=True)
        parts.append(
            f'<a class="citation" href="{html.escape(href_for_key(key), quote=True)}" '
            f'title="{title}">{html.escape(text)}</a>'
        )
    return '<span class="citation-group">(' + "; ".join(parts) + ")</span>"


def cite_markdown(source: str, entries: dict[str, Entry], href_for_key, *, page: str) -> str:
    """Replace every citation group in Markdown ``source`` with Markdown links.

    Used for the notebooks that readers download, whose markdown cells would
    otherwise keep the raw ``[@key]`` syntax that only the site renders.
    """

    def replace(match: re.Match) -> str:
        cited = _cited_entries(match.group(1), entries, page=page)
        links = [f"[{text}]({href_for_key(key)})" for key, text, _ in cited]
        return "(" + "; ".join(links) + ")"

    return CITATION.sub(replace, source)


def _authors_html(authors: list[Author]) -> str:
    names = [f"{author.surname}, {author.initials()}".rstrip(", ") for author in authors]
    if len(names) == 1:
        return html.escape(names[0])
    return html.escape(", ".join(names[:-1]) + ", & " + names[-1])


def _venue_html(entry: Entry) -> str:
    fields = entry.fields
    venue = fields.get("journal") or fields.get("booktitle") or fields.get("publisher") or ""
    text = f"<em>{html.escape(venue)}</em>" if venue else ""
    if fields.get("volume"):
        text += f", {html.escape(fields['volume'])}"
        if fields.get("number"):
            text += f"({html.escape(fields['number'])})"
    if fields.get("pages"):
        text += f", {html.escape(fields['pages'])}"
    return text


def format_entry(entry: Entry) -> str:
    """Return one reference-list item as HTML, anchored by the citation key."""
    fields = entry.fields
    parts = [
        f'<li id="{html.escape(entry.key, quote=True)}" class="reference">',
        # The year carries the same a/b suffix as the citations that point here.
        f"{_authors_html(entry.authors)} ({html.escape(entry.label.rpartition(', ')[2])}). ",
        f"{html.escape(fields.get('title', ''))}. ",
    ]
    venue = _venue_html(entry)
    if venue:
        parts.append(f"{venue}. ")
    if fields.get("doi"):
        doi = html.escape(fields["doi"], quote=True)
        parts.append(f'<a href="https://doi.org/{doi}">doi:{doi}</a>')
    elif fields.get("url"):
        url = html.escape(fields["url"], quote=True)
        parts.append(f'<a href="{url}">{url}</a>')
    parts.append("</li>")
    return "".join(parts)


def format_bibliography(entries: dict[str, Entry]) -> str:
    """Return the whole reference list as HTML, sorted by label."""
    ordered = sorted(entries.values(), key=lambda entry: (entry.label.lower(), entry.key))
    items = "\n".join(format_entry(entry) for entry in ordered)
    return f'<ul class="bibliography">\n{items}\n</ul>'
