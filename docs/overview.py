"""Reads an overview page's source (docs/*.7.txt) into page sections (see render.py).

The source is plain text in a small subset of Markdown:
  summary: TEXT          the NAME line (first line)
  # TITLE                a section (.SH); ## Title: a subsection (.SS)
  a paragraph            lines up to a blank line; `code` and **bold** inline
  - item                 a bulleted list (continuation lines indented)
  | a | b |              a two-column table (rows on consecutive lines; a header row, the
                         one above |---|, is left out)
  ```                    a literal block up to the next ```
  see: a b c             references (SEE ALSO)
  @name@                 blocks generated from the headers (gen.py says which exist)
"""

import re


def parse(text, generated):
    """(summary, [(TITLE, [block])]); `generated` maps @name@ to a list of blocks."""
    lines = text.split("\n")
    summary = lines.pop(0).removeprefix("summary:").strip()
    sections, blocks, i = [], None, 0

    def para_end(j):
        while j < len(lines) and lines[j].strip() and not re.match(r"#|- |\||```|@\w+@$|see:", lines[j]):
            j += 1
        return j

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("## "):
            blocks.append(("sub", line[3:].strip()))
            i += 1
        elif line.startswith("# "):
            blocks = []
            sections.append((line[2:].strip(), blocks))
            i += 1
        elif line.startswith("```"):
            j = lines.index("```", i + 1)
            blocks.append(("code", "\n".join(lines[i + 1:j])))
            i = j + 1
        elif line.startswith("- "):
            items = []
            while i < len(lines) and (lines[i].startswith("- ") or lines[i].startswith("  ")):
                if lines[i].startswith("- "):
                    items.append(lines[i][2:])
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            blocks.append(("list", items))
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip())[1:-1]]
                if all(re.fullmatch(r"-+", c) for c in cells):
                    rows.pop()  # the row above was the header
                else:
                    rows.append(tuple(c.replace("\\|", "|") for c in cells))
                i += 1
            blocks.append(("table", rows))
        elif re.fullmatch(r"@\w+@", line.strip()):
            key = line.strip().strip("@")
            if key not in generated:
                raise SystemExit(f"unknown generated block {line.strip()}")
            blocks.extend(generated[key])
            i += 1
        elif line.startswith("see:"):
            blocks.append(("see", line[4:].split()))
            i += 1
        else:
            j = para_end(i + 1)
            blocks.append(("p", " ".join(l.strip() for l in lines[i:j])))
            i = j
    return summary, sections
