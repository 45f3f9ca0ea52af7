#!/usr/bin/python3
"""Copies a tree of .proto files, dropping field options (`[...]` after a field
number) and `option (validate.*)` statements.

protoc-gen-validate annotations do not change the wire format, but the copy of
validate.proto that ships beside Envoy's API in @grpc/grpc-js-xds is older than
the annotations in it, so upstream does not compile as shipped.

usage: strip_options.py SRC_DIR DST_DIR
"""
import os
import re
import sys

FIELD_NUM = re.compile(r"=\s*\d+\s*$")


def strip(text):
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(text[i:j])
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(text[i:j])
            i = j
        elif c == '"' or c == "'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif c == "[" and FIELD_NUM.search("".join(out[-64:]).rstrip()):
            i = skip_balanced(text, i, "[", "]")
        elif text.startswith("option (validate.", i):
            j = i
            depth = 0
            while j < n and not (text[j] == ";" and depth == 0):
                depth += text[j] in "{[" and 1 or (text[j] in "}]" and -1 or 0)
                j += 1
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def skip_balanced(text, i, open_c, close_c):
    depth, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            i += 1
            while i < n and text[i] != c:
                i += 2 if text[i] == "\\" else 1
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def main():
    src, dst = sys.argv[1], sys.argv[2]
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".proto"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)
            os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(root, f), encoding="utf-8") as fh:
                text = fh.read()
            with open(os.path.join(dst, rel), "w", encoding="utf-8") as fh:
                fh.write(strip(text))


if __name__ == "__main__":
    main()
