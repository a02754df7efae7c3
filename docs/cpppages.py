"""Reads include/pool.hpp's `///` comments into a page per class (named pool::Class, as
libstdc++ names its pages std::vector) and the overview page pool.hpp(3).

pool.hpp is scanned token by token with its braces matched (comments, strings and character
literals skipped): namespaces and classes open scopes; any other `{` is a body and skipped
whole. Within `namespace pool` (not `detail`), each class, struct and enum is a page, and each
public member of one (nested classes' members included, named Guard::member) is listed with
the `///` comment before it. A member without a comment that directly follows another one
(no blank line between) shares its comment (overloads, a run of setters); copy and move
constructors and assignments, destructors, `= default`, `= delete`, `using` and `friend`
declarations are left out (a class's comment says whether it is move-only). Any other public
member without a comment is an error, so the pages cannot miss one. Functions and constants
at namespace scope go to pool.hpp(3), with the header's overview comment.
"""

import re
from dataclasses import dataclass, field

TOKEN = re.compile(r"(?P<doc>(?:[ \t]*///[^\n]*\n)+)|(?P<skip>/\*.*?\*/|//[^\n]*|(?m:^[ \t]*#[^\n]*))"
                   r"|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|(?P<p>[{};])|[^{};/\"'#\n]+|\n|[/#]", re.S)


@dataclass
class Member:
    sig: list  # declarations sharing one comment
    doc: str
    end: int  # the line where the last of them ends


@dataclass
class Entity:
    kind: str  # "class", "struct", "enum", "function", "constant"
    name: str
    head: str  # `template <class T> class Async` / the declaration
    doc: str
    members: list = field(default_factory=list)
    body: str = ""  # the whole text (for the C functions it calls)


def doc_text(raw):
    return "\n".join(re.sub(r"^\s*/// ?", "", l) for l in raw.rstrip("\n").split("\n"))


def norm(s):
    return re.sub(r"\s+", " ", s).strip()


def signature(stmt):
    """A declaration without its body's initializer list or default member initializer braces."""
    s = norm(stmt)
    depth = 0
    for i, ch in enumerate(s):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and s[i:i + 3] == " : " and ")" in s[:i]:
            return s[:i].strip()
    return s


def special(sig, cls):
    base = re.escape(cls)
    return bool(re.search(r"=\s*(delete|default)$|^(using|friend)\b|operator=\(", sig)
                or re.match(rf"(explicit )?~?{base}\((const )?{base}&&?\s*\w*\)", sig)
                or re.match(rf"~{base}\(\)", sig))


class Scanner:
    def __init__(self, text):
        self.text = text
        self.entities, self.errors = [], []

    def run(self):
        self.toks = []
        for m in TOKEN.finditer(self.text):
            kind = "doc" if m.group("doc") else "skip" if m.group("skip") else m.group("p") or "text"
            self.toks.append((kind, m.group(0), self.text.count("\n", 0, m.start())))
        self.i = 0
        self.scope(path=[], cls=None, access="public")
        return self

    def skip_block(self):
        """From just after a `{`: past its matching `}`; returns the text inside."""
        depth, start = 1, self.i
        while depth:
            kind, tok, _ = self.toks[self.i]
            depth += (tok == "{" and kind == "{") - (tok == "}" and kind == "}")
            self.i += 1
        return "".join(t for _, t, _ in self.toks[start:self.i - 1])

    def scope(self, path, cls, access):
        """Reads declarations up to the `}` closing this scope. `cls`: the Entity being filled
        (None at namespace scope); `path`: nested class names (for Guard::member)."""
        stmt, doc, start_line, prev = "", None, None, None
        while self.i < len(self.toks):
            kind, tok, line = self.toks[self.i]
            self.i += 1
            if kind == "doc":
                doc = doc_text(tok)
                continue
            if kind == "skip":
                continue
            if kind == "text":
                if not stmt.strip():
                    label = re.match(r"\s*(public|private|protected)\s*:(?!:)", tok)
                    if label:
                        access = label.group(1)
                        tok = tok[label.end():]
                    if tok.strip():
                        start_line = line + tok[:len(tok) - len(tok.lstrip())].count("\n")
                stmt += tok
                continue
            if kind == "}":
                return
            flat = norm(stmt)
            in_pool = path[:1] == ["pool"] and "detail" not in path
            if kind == "{":
                m = re.match(r"(?:template <.*> )?(class|struct|enum class|enum) (\w+)", flat)
                if flat.startswith("namespace "):
                    self.scope(path + [flat.split()[1]], None, "public")
                elif m and "(" not in flat.split(":")[0]:
                    name = m.group(2)
                    if cls is None and in_pool:
                        ent = Entity(m.group(1).split()[0], name, flat, doc or "")
                        start = self.i
                        if m.group(1).startswith("enum"):
                            ent.body = self.skip_block()
                        else:
                            self.scope(path + [name], ent, "public" if m.group(1) == "struct" else "private")
                            ent.body = "".join(t for _, t, _ in self.toks[start:self.i])
                        self.entities.append(ent)
                    elif cls is not None and access == "public" and in_pool and not isinstance(cls, NestedSink):
                        cls.members.append(Member([f"{flat} {{ ... }}"], doc or "", line))
                        self.scope(path + [name], NestedSink(cls, name),
                                   "private" if m.group(1) == "class" else "public")
                    else:
                        self.scope(path + [name], None, "private")
                elif flat.count("(") > flat.count(")"):  # a lambda inside an expression
                    self.skip_block()
                    stmt += "{...}"
                    continue
                else:  # a body: the statement is a function's declaration
                    self.skip_block()
                    end = self.toks[self.i - 1][2]
                    prev = self.declare(cls, path, access, flat, doc, start_line, prev, end)
                    stmt, doc = "", None
                    if self.i < len(self.toks) and self.toks[self.i][1] == ";":
                        self.i += 1
                    continue
                stmt, doc = "", None
                if self.i < len(self.toks) and self.toks[self.i][1] == ";":
                    self.i += 1
                continue
            if kind == ";":
                if flat:
                    prev = self.declare(cls, path, access, flat, doc, start_line, prev, line)
                stmt, doc = "", None

    def declare(self, cls, path, access, flat, doc, start_line, prev, end_line):
        """Records a member (or a namespace-scope function or constant); returns the Member."""
        in_pool = path[:1] == ["pool"] and "detail" not in path
        if not in_pool:
            return None
        sig = signature(flat)
        if cls is None:
            if len(path) == 1:
                kind = "function" if "(" in sig.split("=")[0] else "constant"
                name = re.search(r"(\w+)\s*(\(|=|$)", sig).group(1)
                if doc is None:
                    self.errors.append(f"pool.hpp:{start_line + 1}: pool::{name} has no /// comment")
                self.entities.append(Entity(kind, name, sig, doc or ""))
            return None
        owner = cls.owner if isinstance(cls, NestedSink) else cls
        if access != "public" or special(sig, cls.name):
            return None
        if isinstance(cls, NestedSink):  # Guard::holder_died()
            sig = re.sub(r"^((?:explicit|static|constexpr|\[\[nodiscard\]\]) )*", "", sig)
            sig = re.sub(r"(operator[^\s(]*|~?\w+)\s*\(", lambda m: f"{cls.name}::{m.group(0)}", sig, count=1)
        if doc is None and prev is not None and start_line == prev.end + 1:
            prev.sig.append(sig)
            prev.end = end_line
            return prev
        if doc is None:
            self.errors.append(f"pool.hpp:{start_line + 1}: pool::{owner.name}: `{sig}` has no /// comment")
            doc = ""
        member = Member([sig], doc, end_line)
        owner.members.append(member)
        return member


@dataclass
class NestedSink:
    """Stands for a nested class: its members go to the enclosing class's page."""
    owner: Entity
    name: str


def summary_of(doc):
    """A class's NAME line: the first sentence of its comment, lower-cased, without the period."""
    s = " ".join(doc.split())
    s = re.split(r"(?<=[a-z)])\. ", s + " ", maxsplit=1)[0].strip().rstrip(".")
    return s[0].lower() + s[1:] if s[:1].isupper() and not s[1:2].isupper() else s


def paragraphs(doc):
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", doc) if p.strip()]


class Cpp:
    """The pages of pool.hpp: pool::Class for each class, and pool.hpp itself."""

    def __init__(self, path):
        text = open(path, encoding="utf-8").read()
        self.overview = re.match(r"/\*(.*?)\*/", text, re.S).group(1)
        sc = Scanner(text).run()
        if sc.errors:
            raise SystemExit("pool.hpp: public members without a /// comment:\n  " + "\n  ".join(sc.errors))
        self.classes = [e for e in sc.entities if e.kind in ("class", "struct", "enum")]
        self.free = [e for e in sc.entities if e.kind in ("function", "constant")]
        missing = [e.name for e in self.classes + self.free if not e.doc]
        if missing:
            raise SystemExit(f"pool.hpp: no /// comment on {missing}")

    def page_names(self):
        return ["pool.hpp"] + [f"pool::{c.name}" for c in self.classes]

    def class_page(self, c, c_functions):
        head = c.head
        lines = [[("B", "#include <pool.hpp>")], [], [("R", "namespace pool {")]]
        tmpl = re.match(r"(template <.*?>) (.*)", head)
        if tmpl:
            lines.append([("R", tmpl.group(1))])
            head = tmpl.group(2)
        if c.kind == "enum":
            lines.append([("B", f"{head} {{ {norm(c.body)} }};")])
        else:
            lines.append([("B", head + " {")])
            if c.kind == "class":
                lines.append([("R", "public:")])
            nested = None
            for m in c.members:
                for sig in m.sig:
                    if nested and f"{nested}::" not in sig:
                        lines.append([("R", "    };")])
                        nested = None
                    if sig.endswith("{ ... }"):  # a nested class, its members follow
                        nested = re.search(r"(class|struct) (\w+)", sig).group(2)
                        lines += [[("R", "    " + sig.removesuffix(" ... }"))], [("R", "    public:")]]
                    elif nested:
                        lines.append([("R", "        " + sig.replace(f"{nested}::", "", 1) + ";")])
                    else:
                        lines.append([("R", "    " + sig + ";")])
            if nested:
                lines.append([("R", "    };")])
            lines.append([("R", "};")])
        lines.append([("R", "}")])
        sections = [("SYNOPSIS", [("synopsis", lines)]), ("DESCRIPTION", [("p", p) for p in paragraphs(c.doc)])]
        if c.members:
            tags = [("\n".join("`" + re.sub(r"^template <.*?> ", "", s) + "`" for s in m.sig), paragraphs(m.doc))
                    for m in c.members]
            sections.append(("MEMBERS", [("tags", tags)]))
        called = sorted(set(re.findall(r"\b(pool_[a-z_]+)\(", c.body)) & c_functions)
        mentioned = sorted({f"pool::{w}" for w in re.findall(r"pool::(\w+)", c.doc + " ".join(m.doc for m in c.members))}
                           - {f"pool::{c.name}"})
        if called:
            sections.append(("C FUNCTIONS", [("p", "What the members call in the C API:"), ("see", called)]))
        sections.append(("SEE ALSO", [("see", mentioned + ["pool.hpp", "libpool"])]))
        return (f"pool::{c.name}", summary_of(c.doc), sections)

    def overview_page(self):
        """pool.hpp(3): the header's opening comment (paragraphs, `- ` lists, indented code),
        the classes, and the functions and constants at namespace scope."""
        lines = [re.sub(r"^ \* ?", "", l) for l in self.overview.strip("\n").split("\n")]
        first = lines[0].removeprefix("pool.hpp: ")
        summary = first.split(". ")[0].rstrip(".")
        lines[0] = first
        blocks, para, items, code = [], [], None, []

        def flush():
            nonlocal para, items, code
            if para:
                blocks.append(("p", " ".join(para)))
            if items:
                blocks.append(("list", items))
            if code:
                blocks.append(("code", "\n".join(code)))
            para, items, code = [], None, []

        for l in lines + [""]:
            if not l.strip():
                flush()
            elif items is not None and l.startswith("  "):
                items[-1] += " " + l.strip()
            elif l.startswith("  "):
                if para:
                    flush()
                code.append(l[2:])
            elif l.startswith("- "):
                if items is None:
                    flush()
                    items = []
                items.append(l[2:])
            else:
                if items is not None or code:
                    flush()
                para.append(l)
        classes = [("tags", [(f"`pool::{c.name}`", [summary_of(c.doc)]) for c in self.classes])]
        free = [("tags", [(f"`{e.head}`", paragraphs(e.doc)) for e in self.free])]
        sections = [("SYNOPSIS", [("code", "#include <pool.hpp>\n\nc++ -std=c++17 app.cpp $(pkg-config --cflags --libs pool)")]),
                    ("DESCRIPTION", blocks + [("p", "Each class has a page named after it, as libstdc++ names its "
                                                    "pages: `man pool::Pool`.")]),
                    ("CLASSES", classes), ("FUNCTIONS AND CONSTANTS", free),
                    ("SEE ALSO", [("see", ["libpool", "pool::Pool", "pool::Error"])])]
        return ("pool.hpp", summary, sections)

    def pages(self, c_functions):
        return [self.overview_page()] + [self.class_page(c, c_functions) for c in self.classes]
