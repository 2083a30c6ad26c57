#!/usr/bin/env python3
"""Offline syntax check of every Bicep file (no Bicep CLI can be installed here).

Parses .bicep files with tree-sitter-bicep. The grammar has no .bicepparam support, so a
parameter file is checked as Bicep after `param name = value` becomes `var name = value` and the
`using` line is dropped: every expression is still parsed. Exits 1 on any syntax error.
"""
import pathlib
import re
import sys

import tree_sitter_bicep
from tree_sitter import Language, Parser

PARSER = Parser(Language(tree_sitter_bicep.language()))


def errors(source: bytes):
    found = []

    def walk(node):
        if node.type == "ERROR" or node.is_missing:
            found.append(node)
        for child in node.children:
            walk(child)

    tree = PARSER.parse(source)
    if tree.root_node.has_error:
        walk(tree.root_node)
        if not found:
            found.append(tree.root_node)
    return found


def as_bicep(path: pathlib.Path) -> bytes:
    text = path.read_text()
    if path.suffix == ".bicepparam":
        text = re.sub(r"^using\s+'[^']*'\s*$", "", text, flags=re.M)
        text = re.sub(r"^param\s+(\w+)\s*=", r"var \1 =", text, flags=re.M)
    return text.encode()


def main(paths):
    bad = 0
    for name in paths:
        path = pathlib.Path(name)
        source = as_bicep(path)
        found = errors(source)
        if found:
            bad += 1
            for node in found[:5]:
                line, column = node.start_point
                snippet = source[node.start_byte : node.end_byte][:60]
                print(f"{path}:{line + 1}:{column + 1}: syntax error near {snippet!r}")
        else:
            print(f"{path}: ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
