#!/usr/bin/env python3
"""Generates libpool's reference from its headers: manual pages and HTML.

  python3 docs/gen.py --man DIR    writes DIR/man3/*.3 and DIR/man7/*.7 (committed: docs/man)
  python3 docs/gen.py --html DIR   writes DIR/*.html and DIR/index.html (`make docs`)

Pages: one per function of include/pool.h and include/pool_mpi.h, per handle, struct, enum
and function pointer type of pool.h, per class of include/pool.hpp (named pool::Class), and
the overviews libpool(7), libpool-mpi(7) (sources docs/libpool.7.txt, docs/libpool-mpi.7.txt)
and pool.hpp(3). Text comes from the doc comments (cheader.py, cpppages.py say how they are
read); NAME lines from docs/summaries.txt. Python 3 standard library only; no network.
tests/docs.rs checks that the committed pages are what this writes.
"""

import argparse
import os
import re
import sys
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import cheader  # noqa: E402
import cpppages  # noqa: E402
import overview  # noqa: E402
import render  # noqa: E402

HEADERS = {"pool.h": "include/pool.h", "pool_mpi.h": "include/pool_mpi.h"}
LIBRARY = {
    "pool.h": "libpool (**-lpool**; pkg-config **pool**; CMake **Pool::pool**)",
    "pool_mpi.h": "libpool_mpi (**-lpool_mpi -lpool**; pkg-config **pool-mpi**; CMake **Pool::pool_mpi**)",
}
# Function groups of libpool(7) and the HTML index: (title, name prefixes), first match wins.
GROUPS = [
    ("The library", ["pool_version", "pool_strerror", "pool_last_"]),
    ("Inside a task", ["pool_out_", "pool_task_error"]),
    ("Queues, locks and events", ["pool_queue_", "pool_lock_", "pool_event_create", "pool_event_set",
                                  "pool_event_clear", "pool_event_is_set", "pool_event_wait",
                                  "pool_event_free"]),
    ("Processes", ["pool_process_"]),
    ("Results", ["pool_async_"]),
    ("Iterators", ["pool_imap", "pool_iter_"]),
    ("Streams", ["pool_stream"]),
    ("Maps, applies and submits", ["pool_map", "pool_apply", "pool_submit", "pool_call_options_init"]),
    ("Distributed pools", ["pool_create_distributed", "pool_create_mpi"]),
    ("Pools", ["pool_"]),
]
SECTIONS = ["DESCRIPTION", "RETURN VALUE", "OWNERSHIP", "THREAD SAFETY", "LIMITS"]
MARKERS = {"Ownership": "OWNERSHIP", "Thread safety": "THREAD SAFETY", "Limits": "LIMITS"}


@dataclass
class Page:
    name: str
    section: int
    summary: str
    sections: list
    params: tuple = ()
    header: str = "pool.h"


def cargo_version():
    text = open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8").read()
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)


def read_summaries():
    out = {}
    for line in open(os.path.join(HERE, "summaries.txt"), encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            name, text = line.split(":", 1)
            out[name.strip()] = text.strip()
    return out


def first_clause(doc):
    s = " ".join(doc.split())
    s = re.split(r"(?<=[a-z)`])[.:;] ", s + " ", maxsplit=1)[0].strip(" .")
    return s[0].lower() + s[1:] if s[:1].isupper() and s[1:2].islower() else s


def paragraphs(doc):
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", doc) if p.strip()]


def split_doc(doc):
    """A doc comment cut into sections: "Ownership:", "Thread safety:" and "Limits:" start their
    own (up to the next one or the paragraph's end); a paragraph starting "Returns" is the
    RETURN VALUE."""
    out = {k: [] for k in SECTIONS}
    for text in paragraphs(doc):
        pieces = re.split(r"(?:^|(?<=[.)] ))(Ownership|Thread safety|Limits):\s*", text)
        lead = pieces[0].strip()
        if lead:
            out["RETURN VALUE" if lead.startswith("Returns ") else "DESCRIPTION"].append(lead)
        for marker, body in zip(pieces[1::2], pieces[2::2]):
            body = body.strip()
            out[MARKERS[marker]].append(body[:1].upper() + body[1:])
    return out


class Api:
    """Everything the C headers declare, and who uses what."""

    def __init__(self):
        self.overviews, self.decls = {}, []
        for h, path in HEADERS.items():
            ov, ds = cheader.parse_header(os.path.join(ROOT, path), h)
            self.overviews[h] = ov
            self.decls += ds
        self.by_name = {d.name: d for d in self.decls}
        self.functions = [d for d in self.decls if d.kind == "function"]
        self.typed = [d for d in self.decls if d.kind in ("opaque", "struct", "enum", "fnptr")]
        self.statuses = next(d for d in self.decls if d.kind == "enum" and d.name == "pool_status")

    def types_in(self, text):
        return [w for w in dict.fromkeys(re.findall(r"\bpool_\w+", text))
                if w in self.by_name and self.by_name[w].kind in ("struct", "fnptr", "opaque")]

    def type_closure(self, text):
        """The types `text` uses, each after the types its own definition uses."""
        out = []

        def visit(t, seen):
            if t in out or t in seen:
                return
            d = self.by_name[t]
            for dep in self.types_in(d.text):
                if dep != t:
                    visit(dep, seen | {t})
            out.append(t)

        for t in self.types_in(text):
            visit(t, set())
        return out

    def life(self, handle):
        """The functions that make a handle type and the one that frees it."""
        made = [f.name for f in self.functions if f.ret.startswith(handle + " *")]
        base = handle.removesuffix("_t")
        return made, [f.name for f in self.functions if f.name in (base + "_free", base + "_destroy")]

    def users(self, type_name):
        return [f.name for f in self.functions if type_name in self.types_in(f.text)]


def mentioned(api, doc, pages, own):
    names = re.findall(r"\bpool_\w+", doc)
    return [n for n in dict.fromkeys(names) if n in pages and n != own]


def synopsis(api, d):
    """The #include, the prototype (parameters in italics) and the types it uses."""
    lines = [[("B", f"#include <{d.header}>")], []]
    params = {p[1] for p in d.params}
    for raw in d.text.split("\n"):
        line, pos = [], 0
        for m in re.finditer(r"\b\w+\b", raw):
            if m.group(0) in params and m.start() > raw.find("("):
                line += [("B", raw[pos:m.start()]), ("I", m.group(0))]
                pos = m.end()
        line.append(("B", raw[pos:]))
        lines.append([(s, t) for s, t in line if t])
    types = api.type_closure(d.text)
    if types and d.kind == "function":
        lines.append([])
        for t in types:
            lines += [[("R", l)] for l in api.by_name[t].text.split("\n")]
    return lines


def status_tags(api, names):
    return [(f"`{n[0]}` ({v})", [doc]) for n, v, doc in api.statuses.members if n[0] in names]


def function_page(api, d, summaries, pages):
    parts = split_doc(d.doc)
    name = d.name
    if not parts["RETURN VALUE"]:
        codes = re.findall(r"POOL_[A-Z]+", d.doc)
        if re.fullmatch(r"pool_\w+_t \*", d.ret) and "NULL" not in d.doc:
            parts["RETURN VALUE"].append(
                "A new handle, or NULL on failure, with `pool_last_status()` and `pool_last_error()` saying why.")
        elif d.ret == "int" and codes and not re.match(r"(The|A) ", d.doc):
            parts["RETURN VALUE"].append(
                "A `pool_status`: `POOL_OK` (0) on success, otherwise a failure status as described above, "
                "with a message for `pool_last_error()` on the calling thread.")
    sections = [("LIBRARY", [("p", LIBRARY[d.header])]), ("SYNOPSIS", [("synopsis", synopsis(api, d))])]
    for title in SECTIONS:
        if parts[title]:
            sections.append((title, [("p", p) for p in parts[title]]))
        if title == "RETURN VALUE":
            codes = [n[0] for n, _, _ in api.statuses.members if re.search(rf"\b{n[0]}\b", d.doc)]
            codes = [c for c in codes if c != "POOL_OK"]
            if codes:
                sections.append(("ERRORS", [("p", "The statuses named above; in general:"),
                                            ("tags", status_tags(api, codes))]))
    see = mentioned(api, d.doc, pages, name)
    for sib in (name + "_ex", name.removesuffix("_ex"), name.removesuffix("_async"), name + "_async"):
        if sib in pages and sib != name and sib not in see:
            see.append(sib)
    for t in api.types_in(d.text):
        if t in pages and t not in see:
            see.append(t)
        init = t.removesuffix("_t") + "_init"
        if init in pages and init != name and init not in see:
            see.append(init)
    see = sorted(see, key=lambda n: (n.endswith("_t") or n.endswith("_fn") or n == "pool_status", n))
    see += ["libpool-mpi", "libpool"] if d.header == "pool_mpi.h" else ["libpool"]
    sections.append(("SEE ALSO", [("see", see)]))
    params = tuple(p[1] for p in d.params)
    return Page(name, 3, summaries.get(name) or first_clause(d.doc), sections, params, d.header)


def type_page(api, d, summaries, pages):
    lines = [[("B", f"#include <{d.header}>")], []]
    for t in api.type_closure(d.text):
        if t != d.name:
            lines += [[("R", l)] for l in api.by_name[t].text.split("\n")] + [[]]
    lines += [[("B", l)] for l in d.text.split("\n")]
    sections = [("SYNOPSIS", [("synopsis", lines)]),
                ("DESCRIPTION", [("p", p) for p in paragraphs(d.doc)])]
    if d.kind == "opaque":
        made, freed = api.life(d.name)
        sections[1][1].append(("p", f"An opaque handle: libpool gives out pointers to it and checks each one "
                                    f"on every use (see HANDLES in libpool(7)). Made by {', '.join(made)}; "
                                    f"freed by {', '.join(freed)}."))
    if d.kind == "struct":
        tags = [(", ".join(f"`{n}`" for n in names), paragraphs(doc) or ["(Undocumented.)"])
                for names, _, doc in d.members]
        if any(doc for _, _, doc in d.members):
            sections.append(("FIELDS", [("tags", tags)]))
    elif d.kind == "enum":
        sections.append(("VALUES", [("tags", [(f"`{n[0]}` = {v}", paragraphs(doc)) for n, v, doc in d.members])]))
    docs = d.doc + " ".join(doc for _, _, doc in d.members)
    see = sorted(set(api.users(d.name)) | set(mentioned(api, docs, pages, d.name)))
    see += [t.name for t in api.typed if t.name != d.name and d.name in api.types_in(t.text) and t.name not in see]
    sections.append(("SEE ALSO", [("see", see + ["libpool"])]))
    params = tuple(p[1] for p in d.params) if d.kind == "fnptr" else ()
    return Page(d.name, 3, summaries.get(d.name) or first_clause(d.doc), sections, params, d.header)


def group_of(name):
    return next(title for title, prefixes in GROUPS if any(name.startswith(p) for p in prefixes))


def grouped_functions(api, summaries):
    """[(group title, [function])], in GROUPS' reading order, each in docs/summaries.txt's order."""
    groups, order = {}, list(summaries)
    for f in sorted(api.functions, key=lambda f: order.index(f.name) if f.name in order else len(order)):
        groups.setdefault(group_of(f.name), []).append(f.name)
    return [(title, groups[title]) for title, _ in reversed(GROUPS) if title in groups]


def const_values(d):
    """[(name, value)] of a constant and the undocumented ones that share its comment."""
    first, *rest = d.value.split("\n")
    return [(d.name, first)] + [tuple(l.split(None, 1)) for l in rest]


def generated_blocks(api, summaries):
    """The @name@ blocks of the overview sources."""
    functions = []
    for title, names in grouped_functions(api, summaries):
        functions += [("sub", title), ("tags", [(f"`{n}`", [summaries.get(n, "")]) for n in names])]
    consts = [d for d in api.decls if d.kind == "const"]
    handles = []
    for d in api.decls:
        if d.kind == "opaque":
            made, freed = api.life(d.name)
            handles.append((f"`{d.name}`", [f"Made by {', '.join(made)}; freed by {', '.join(freed)}."]))
    return {
        "statuses": [("tags", status_tags(api, [n[0] for n, _, _ in api.statuses.members]))],
        "constants": [("tags", [(", ".join(f"`{n}` = {v}" for n, v in const_values(d)), paragraphs(d.doc) or [""])
                                for d in consts])],
        "handles": [("tags", handles)],
        "functions": functions,
        "types": [("tags", [(f"`{d.name}`", [summaries.get(d.name, "")]) for d in api.typed])],
        "mpi_functions": [("tags", [(f"`{f.name}`", [summaries.get(f.name, "")])
                                    for f in api.functions if f.header == "pool_mpi.h"])],
    }


def build():
    api = Api()
    summaries = read_summaries()
    names = {d.name: 3 for d in api.functions + api.typed}
    cpp = cpppages.Cpp(os.path.join(ROOT, "include/pool.hpp"))
    names.update({n: 3 for n in cpp.page_names()})
    names.update({"libpool": 7, "libpool-mpi": 7})
    pages = [function_page(api, d, summaries, names) for d in api.functions]
    pages += [type_page(api, d, summaries, names) for d in api.typed]
    gen = generated_blocks(api, summaries)
    for name in ("libpool", "libpool-mpi"):
        text = open(os.path.join(HERE, name + ".7.txt"), encoding="utf-8").read()
        summary, sections = overview.parse(text, gen)
        pages.append(Page(name, 7, summary, sections, (), "pool_mpi.h" if name.endswith("mpi") else "pool.h"))
    for name, summary, sections in cpp.pages({f.name for f in api.functions}):
        pages.append(Page(name, 3, summary, sections, (), "pool.hpp"))
    # An error, as an undocumented member is in cpppages.py: a function without its comment, or
    # a page without the NAME line whatis(1) and apropos(1) read.
    bare = [f.name for f in api.functions if not f.doc.strip()] + [p.name for p in pages if not p.summary]
    if bare:
        raise SystemExit(f"docs/gen.py: undocumented (a /** */ comment in the header, from the Rust doc "
                         f"comment, or a line in docs/summaries.txt): {', '.join(dict.fromkeys(bare))}")
    return api, pages, render.Links(names)


def write_all(directory, files):
    os.makedirs(directory, exist_ok=True)
    for rel, text in files.items():
        path = os.path.join(directory, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--man", help="write manual pages under this directory (man3/, man7/)")
    ap.add_argument("--html", help="write HTML pages into this directory")
    args = ap.parse_args()
    if not args.man and not args.html:
        ap.error("give --man DIR and/or --html DIR")
    version = cargo_version()
    api, pages, links = build()
    if args.man:
        write_all(args.man, {f"man{p.section}/{p.name}.{p.section}": render.to_roff(p, links, version)
                             for p in pages})
    if args.html:
        files = {f"{p.name}.html": render.to_html(p, links, version) for p in pages}
        summaries = {p.name: p.summary for p in pages}
        groups = [("Overview", ["libpool", "libpool-mpi", "pool.hpp"])]
        groups += [(f"Functions: {title.lower()}", names) for title, names in grouped_functions(api, read_summaries())]
        groups.append(("Types", [d.name for d in api.typed]))
        groups.append(("C++ (pool.hpp)", [p.name for p in pages if p.name.startswith("pool::")]))
        files["index.html"] = render.html_index(groups, links, summaries, version)
        write_all(args.html, files)


if __name__ == "__main__":
    main()
