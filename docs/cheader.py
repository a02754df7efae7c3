"""Reads the C headers (include/pool.h, include/pool_mpi.h) into declarations with their docs.

Both headers put a `/** ... */` comment before each declaration (cbindgen writes pool.h that
way from the Rust doc comments; pool_mpi.h follows it by hand). What is understood:
  #define NAME value                         a constant (undocumented ones join the one before)
  typedef struct NAME_s NAME_t;              an opaque handle
  typedef enum { A = 0, ... } NAME;          an enum, each value with its own comment
  typedef struct { fields } NAME;            a struct, each field with its own comment (fields
                                             without one share the comment before them)
  typedef RET (*NAME)(params);               a function pointer type
  RET NAME(params);                          a function
The first plain `/* ... */` comment is the header's overview. Anything else (preprocessor
lines, extern "C") is skipped; a `/** */` comment before something not understood is an error,
so nothing documented is ever dropped silently.
"""

import re
from dataclasses import dataclass, field


@dataclass
class Decl:
    kind: str  # "function", "fnptr", "struct", "enum", "opaque", "const"
    name: str
    doc: str  # the comment's text: paragraphs separated by blank lines
    text: str  # the declaration as written (without comments)
    header: str  # "pool.h" or "pool_mpi.h"
    ret: str = ""  # functions and function pointers: the return type
    params: list = field(default_factory=list)  # [(type text, name)]
    members: list = field(default_factory=list)  # struct fields / enum values: [(names, decl, doc)]
    value: str = ""  # constants


def comment_text(raw):
    """The text of a /** */ or /* */ comment: the leading ` * ` of each line removed."""
    body = re.sub(r"^/\*\*?|\*/$", "", raw.strip())
    lines = [re.sub(r"^\s*\* ?", "", l).rstrip() for l in body.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


TOKEN = re.compile(r"/\*.*?\*/|//[^\n]*|#[^\n]*(?:\\\n[^\n]*)*|[^;{}/#]+|[;{}]|/", re.S)


def split_params(text):
    """`a, b (*c)(d, e), f` -> the parameters, split at top-level commas."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += ch in "([" and 1 or 0
        depth -= ch in ")]" and 1 or 0
        cur += ch
    if cur.strip():
        out.append(cur.strip())
    return [] if out == ["void"] else out


def param_name(p):
    """The name a parameter or field declares: `void (*init)(void *)` -> init, `char m[256]` -> m."""
    m = re.search(r"\(\s*\*\s*(\w+)\s*\)", p)
    if m:
        return m.group(1)
    m = re.search(r"(\w+)\s*(\[[^\]]*\])?\s*;?\s*$", p)
    return m.group(1) if m else ""


def norm(s):
    return re.sub(r"\s+", " ", s).strip()


def parse_members(body, kind):
    """Fields of a struct body or values of an enum body, each with the comment before it."""
    members, doc = [], None
    if kind == "enum":
        items = re.findall(r"(/\*\*.*?\*/)|([A-Z_0-9]+\s*=\s*[^,\n]+),?", body, re.S)
        for c, item in items:
            if c:
                doc = comment_text(c)
            else:
                name, value = [x.strip() for x in item.split("=", 1)]
                members.append(([name], value, doc or ""))
                doc = None
        return members
    for c, decl in re.findall(r"(/\*\*.*?\*/)|([^;/]+;)", body, re.S):
        if c:
            doc = comment_text(c)
            continue
        decl = norm(decl)
        if doc is None and members:  # shares the comment before it
            members[-1][0].append(param_name(decl))
            members[-1] = (members[-1][0], members[-1][1] + "\n" + decl, members[-1][2])
        else:
            members.append(([param_name(decl)], decl, doc or ""))
        doc = None
    return members


def parse_header(path, header_name):
    """(overview comment, [Decl]) of one header."""
    src = open(path, encoding="utf-8").read()
    decls, overview, doc, stmt, depth = [], None, None, "", 0
    for m in TOKEN.finditer(src):
        tok = m.group(0)
        if depth == 0 and tok.startswith("/*"):
            if tok.startswith("/**"):
                doc = comment_text(tok)
            elif overview is None:
                overview = comment_text(tok)
            continue
        if tok.startswith("/*") or tok.startswith("//"):
            stmt += "" if depth == 0 else tok
            continue
        if tok.startswith("#") and depth == 0:
            m2 = re.match(r"#define\s+(POOL_\w+)\s+(.+)", tok)
            if m2 and m2.group(1) not in ("POOL_H", "POOL_MPI_H", "POOL_HPP"):
                if doc is None and decls and decls[-1].kind == "const":
                    prev = decls[-1]
                    prev.value += "\n" + m2.group(1) + " " + m2.group(2).strip()
                    prev.text += "\n" + tok.strip()
                else:
                    decls.append(Decl("const", m2.group(1), doc or "", tok.strip(), header_name,
                                      value=m2.group(2).strip()))
                doc = None
            elif doc is not None:
                raise SystemExit(f"{path}: a doc comment before {tok.strip()!r}, which gen.py does not understand")
            continue
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
        stmt += tok
        if tok == ";" and depth == 0:
            d = parse_statement(norm_keep(stmt), doc, header_name)
            if d is not None:
                decls.append(d)
            elif doc is not None:
                raise SystemExit(f"{path}: a doc comment before {norm(stmt)!r}, which gen.py does not understand")
            stmt, doc = "", None
        elif tok == "{" and depth == 1 and re.search(r'extern\s+"C"\s*\{$', norm(stmt)):
            stmt, depth = "", 0  # extern "C" { ... }: its contents are top level
        elif tok == "}" and depth == 0 and not stmt.strip(" \n}"):
            stmt = ""
    return overview or "", decls


def norm_keep(s):
    """Statement text with the blank lines and surrounding space removed (keeps line breaks)."""
    return "\n".join(l.rstrip() for l in s.strip().split("\n") if l.strip())


def parse_statement(stmt, doc, header):
    flat = norm(stmt)
    doc = doc or ""
    m = re.match(r"typedef struct (\w+) (\w+);$", flat)
    if m:
        return Decl("opaque", m.group(2), doc, flat, header)
    m = re.match(r"typedef (enum|struct) \{(.*)\} (\w+);$", stmt, re.S)
    if m:
        kind, body, name = m.groups()
        members = parse_members(body, kind)
        if kind == "enum":
            text = "typedef enum {\n" + "".join(f"    {n[0]} = {v},\n" for n, v, _ in members) + "} " + name + ";"
        else:
            text = "typedef struct {\n" + "".join(
                "".join(f"    {l}\n" for l in d.split("\n")) for _, d, _ in members) + "} " + name + ";"
        return Decl(kind, name, doc, text, header, members=members)
    m = re.match(r"typedef (.+?)\(\*(\w+)\)\((.*)\);$", flat)
    if m:
        ret, name, params = m.groups()
        ps = [(p, param_name(p)) for p in split_params(params)]
        return Decl("fnptr", name, doc, flat, header, ret=ret.strip(), params=ps)
    m = re.match(r"([\w\s\*]+?)\b(pool_\w+)\((.*)\);$", flat)
    if m:
        ret, name, params = m.groups()
        ps = [(p, param_name(p)) for p in split_params(params)]
        return Decl("function", name, doc, stmt, header, ret=norm(ret), params=ps)
    return None

