"""Load the Terraform configuration with python-hcl2 and index what it declares."""
import re
from pathlib import Path

import hcl2

REF_RE = re.compile(r"\b(var|local|data|module)\.([A-Za-z_][A-Za-z0-9_-]*)")
# a resource reference: <type>.<name> where type starts with a provider prefix
RES_RE = re.compile(r"(?<![\w.\"])(google_[a-z0-9_]+)\.([A-Za-z_][A-Za-z0-9_-]*)")


def unquote(s):
    """python-hcl2 keeps the quotes of block labels and string literals."""
    if isinstance(s, str) and len(s) >= 2 and s[0] == s[-1] == '"':
        return s[1:-1]
    return s


def strip_meta(obj):
    """Drop python-hcl2's __comments__ / __is_block__ keys, unquote strings and keys."""
    if isinstance(obj, dict):
        return {unquote(k): strip_meta(v) for k, v in obj.items()
                if not (isinstance(k, str) and k.startswith("__") and k.endswith("__"))}
    if isinstance(obj, list):
        return [strip_meta(v) for v in obj]
    return unquote(obj)


def load(path):
    with open(path) as f:
        return strip_meta(hcl2.load(f))


def strings(obj):
    """Every string anywhere in a parsed structure (expressions come back as strings)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)
    elif isinstance(obj, str):
        yield obj


class Module:
    """All .tf files of one directory, parsed."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.files = {p.name: load(p) for p in sorted(self.dir.glob("*.tf"))}
        self.variables, self.locals, self.outputs = {}, {}, {}
        self.resources, self.data = {}, {}
        for doc in self.files.values():
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("locals", []):
                self.locals.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        self.resources[f"{rtype}.{name}"] = body
            for block in doc.get("data", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        self.data[f"{rtype}.{name}"] = body

    def all_strings(self):
        for doc in self.files.values():
            yield from strings(doc)

    def references(self, obj=None):
        """(kind, name) pairs for var./local./data./module. references."""
        src = self.all_strings() if obj is None else strings(obj)
        refs = set()
        for s in src:
            refs.update(REF_RE.findall(s))
        return refs

    def resource_references(self, obj=None):
        src = self.all_strings() if obj is None else strings(obj)
        refs = set()
        for s in src:
            if "${" not in s:
                continue  # only expressions; plain strings may mention type names
            refs.update(f"{t}.{n}" for t, n in RES_RE.findall(s))
        return refs
