"""Writes a page (the model below) as a manual page (roff, man(7) macros) and as HTML.

A page: name, section (3 or 7), summary (the NAME line), sections [(TITLE, [block])].
Blocks:
  ("p", text)             a paragraph of inline markup
  ("code", text)          a literal block
  ("synopsis", lines)     literal lines, each a list of (style, text): style "B" bold, "I"
                          italic (a parameter), "R" roman
  ("tags", [(term, [text])])  tagged paragraphs: a term (inline markup; several, one a line)
                          and its paragraphs
  ("list", [text])        a bulleted list
  ("table", [(a, b)])     two columns of inline markup (man: tagged paragraphs)
  ("see", [name])         references to other pages, by page name
  ("sub", title)          a subsection heading
Inline markup: `code`, **bold**; identifiers that name a page (pool_map, pool::Pool) are set
in bold and linked in HTML; a `code` span that is one of the page's parameters (`len`,
`*len`) is set in italics, any other in bold.
"""

import html
import re

CSS = """body{font:16px/1.5 system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}pre{background:#f5f5f5;padding:.6em;overflow-x:auto}
code,pre{font-family:ui-monospace,monospace;font-size:.92em}nav{font-size:.9em}dt{font-weight:bold;margin-top:.6em}
table{border-collapse:collapse}td{border-top:1px solid #ddd;padding:.3em .5em;vertical-align:top}a{color:#0645ad}"""

IDENT = re.compile(r"pool::[A-Za-z_]\w*(?:::[A-Za-z_]\w*)?|\b(?:pool|POOL)_\w+|\blibpool(?:-mpi)?\b|\bpool\.hpp\b")
SPAN = re.compile(r"(`[^`]*`|\*\*.+?\*\*)")


class Links:
    """The pages that exist ({name: section}) and the files they are written to."""

    def __init__(self, pages):
        self.pages = pages

    def known(self, word):
        return self.pages.get(word)

    def longest(self, word):
        """The page a word names: pool::Pool::map names pool::Pool (its class's page)."""
        while word and word not in self.pages:
            if "::" not in word[6:]:
                return None
            word = word.rsplit("::", 1)[0]
        return word or None


def page_file(name, section, ext):
    return f"{name}.{section}" if ext == "man" else f"{name}.html"


# ---------------------------------------------------------------------------------------------
# roff

def resc(s, code=False):
    """Escapes text for roff: backslashes, and minus signs where they are not hyphens."""
    s = s.replace("\\", "\\e")
    if code:
        return s.replace("-", "\\-")
    return re.sub(r"(?<![\w])-(?=[\w\d.])", r"\\-", s)


def roff_words(s, links, code=False):
    out, pos = "", 0
    for m in IDENT.finditer(s):
        out += resc(s[pos:m.start()], code)
        w = m.group(0)
        out += f"\\fB{resc(w, True)}\\fR" if links.longest(w) and not code else resc(w, code)
        pos = m.end()
    return out + resc(s[pos:], code)


def roff_inline(text, links, params=()):
    out = ""
    for piece in SPAN.split(text):
        if piece.startswith("`") and piece.endswith("`") and len(piece) >= 2:
            inner = piece[1:-1]
            style = "I" if inner.lstrip("*&") in params else "B"
            out += f"\\f{style}{resc(inner, True)}\\fR"
        elif piece.startswith("**") and piece.endswith("**") and len(piece) > 4:
            out += f"\\fB{resc(piece[2:-2])}\\fR"
        else:
            out += roff_words(piece, links)
    return out


def sentences(text):
    """Splits a paragraph after each sentence (outside `code`), for roff's sentence spacing."""
    parts, cur, ticks = [], "", 0
    i = 0
    while i < len(text):
        ch = text[i]
        cur += ch
        ticks += ch == "`"
        if ch in ".?!" and ticks % 2 == 0 and i + 2 < len(text) and text[i + 1] == " " \
                and (text[i + 2].isupper() or text[i + 2] in "`(") \
                and not re.search(r"(\be\.g|\bi\.e|\betc|\bvs)\.$", cur):
            parts.append(cur.strip())
            cur = ""
            i += 1
        i += 1
    if cur.strip():
        parts.append(cur.strip())
    return parts


def roff_lines(text, links, params=()):
    text = " ".join(text.split())
    lines = [roff_inline(s, links, params) for s in sentences(text)]
    return [("\\&" + l) if l[:1] in ".'" else l for l in lines]


def roff_block(block, links, params):
    kind, body = block
    if kind == "p":
        return [".PP"] + roff_lines(body, links, params)
    if kind == "code":
        lines = [".PP", ".RS 4", ".EX"]
        lines += [("\\&" if l[:1] in ".'" else "") + resc(l, True) for l in body.split("\n")]
        return lines + [".EE", ".RE"]
    if kind == "synopsis":
        out = [".PP", ".nf"]
        for line in body:
            s = ""
            for style, t in line:
                t = resc(t, True)
                s += t if style == "R" else f"\\f{style}{t}\\fR"
            out.append(("\\&" if s[:1] in ".'" else "") + s)
        return out + [".fi"]
    if kind == "tags":
        out = []
        for term, paras in body:
            first, *more = term.split("\n")  # several terms: one line each
            out += [".TP", " ".join(roff_lines(first, links, params))]
            for t in more:
                out += [".TQ", " ".join(roff_lines(t, links, params))]
            for i, p in enumerate(paras):
                out += ([] if i == 0 else [".IP"]) + roff_lines(p, links, params)
        return out
    if kind == "table":
        out = []
        for a, b in body:
            out += [".TP", " ".join(roff_lines(a, links, params))] + roff_lines(b, links, params)
        return out
    if kind == "sub":
        return [f'.SS "{resc(body)}"']
    if kind == "list":
        out = []
        for item in body:
            out += [".IP \\(bu 2"] + roff_lines(item, links, params)
        return out
    if kind == "see":
        refs = [r for r in body if links.known(r)]
        return [".PP"] + [f".BR {r} ({links.known(r)}){',' if i + 1 < len(refs) else ''}"
                          for i, r in enumerate(refs)]
    raise ValueError(kind)


def to_roff(page, links, version):
    out = [f'.TH "{page.name}" {page.section} "" "libpool {version}" "libpool manual"',
           ".nr HY 0", ".nh", ".ad l", ".SH NAME", f"{resc(page.name, True)} \\- {roff_inline(page.summary, Links({}))}"]
    for title, blocks in page.sections:
        out.append(f'.SH "{title}"' if " " in title else f".SH {title}")
        for b in blocks:
            lines = roff_block(b, links, page.params)
            if lines[:1] == [".PP"] and out[-1].startswith((".SH", ".SS")):
                lines = lines[1:]  # a heading already starts a paragraph
            out += lines
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML

def href(name, links):
    return "./" + html.escape(page_file(name, links.known(name), "html"), quote=True)


def html_words(s, links, skip=None):
    out, pos = "", 0
    for m in IDENT.finditer(s):
        out += html.escape(s[pos:m.start()])
        w = m.group(0)
        target = links.longest(w)
        if target and target != skip:
            out += f'<a href="{href(target, links)}">{html.escape(w)}</a>'
        else:
            out += html.escape(w)
        pos = m.end()
    return out + html.escape(s[pos:])


def html_inline(text, links, params=(), skip=None):
    out = ""
    for piece in SPAN.split(" ".join(text.split())):
        if piece.startswith("`") and piece.endswith("`") and len(piece) >= 2:
            inner = piece[1:-1]
            body = f"<i>{html.escape(inner)}</i>" if inner.lstrip("*&") in params else html_words(inner, links, skip)
            out += f"<code>{body}</code>"
        elif piece.startswith("**") and piece.endswith("**") and len(piece) > 4:
            out += f"<b>{html.escape(piece[2:-2])}</b>"
        else:
            out += html_words(piece, links, skip)
    return out


def html_block(block, links, params, skip):
    kind, body = block
    inl = lambda t: html_inline(t, links, params, skip)  # noqa: E731
    if kind == "p":
        return f"<p>{inl(body)}</p>"
    if kind == "code":
        return f"<pre>{html_words(body, links, skip)}</pre>"
    if kind == "synopsis":
        lines = []
        for line in body:
            s = ""
            for style, t in line:
                t = html_words(t, links, skip)
                s += {"B": f"<b>{t}</b>", "I": f"<i>{t}</i>"}.get(style, t)
            lines.append(s)
        return "<pre>" + "\n".join(lines) + "</pre>"
    if kind == "tags":
        items = "".join("".join(f"<dt>{inl(t)}</dt>" for t in term.split("\n"))
                        + "".join(f"<dd>{inl(p)}</dd>" for p in ps) for term, ps in body)
        return f"<dl>{items}</dl>"
    if kind == "table":
        rows = "".join(f"<tr><td>{inl(a)}</td><td>{inl(b)}</td></tr>" for a, b in body)
        return f"<table>{rows}</table>"
    if kind == "sub":
        return f"<h3>{html.escape(body)}</h3>"
    if kind == "list":
        return "<ul>" + "".join(f"<li>{inl(i)}</li>" for i in body) + "</ul>"
    if kind == "see":
        refs = [r for r in body if links.known(r)]
        return "<p>" + ", ".join(
            f'<a href="{href(r, links)}">{html.escape(r)}({links.known(r)})</a>' for r in refs) + "</p>"
    raise ValueError(kind)


def html_page(title, body, version):
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)} \u2014 libpool {version}</title>\n<style>\n{CSS}\n</style>\n"
            f'</head>\n<body>\n<nav><a href="./index.html">libpool {version} reference</a></nav>\n'
            f"{body}\n</body>\n</html>\n")


def to_html(page, links, version):
    parts = [f"<h1>{html.escape(page.name)}({page.section})</h1>",
             f"<p>{html.escape(page.name)} \u2014 {html_inline(page.summary, links, skip=page.name)}</p>"]
    for title, blocks in page.sections:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts += [html_block(b, links, page.params, page.name) for b in blocks]
    return html_page(f"{page.name}({page.section})", "\n".join(parts), version)


def html_index(groups, links, summaries, version):
    """The index: [(group title, [page name])]."""
    parts = [f"<h1>libpool {version} reference</h1>"]
    for title, names in groups:
        parts.append(f"<h2>{html.escape(title)}</h2>\n<dl>")
        for n in names:
            parts.append(f'<dt><a href="{href(n, links)}">{html.escape(n)}</a>({links.known(n)})</dt>'
                         f"<dd>{html_inline(summaries[n], links, skip=n)}</dd>")
        parts.append("</dl>")
    return html_page("libpool reference", "\n".join(parts), version)
