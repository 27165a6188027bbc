"""Each SPEC value is declared once in code: the training recipes live in nao_ws/recipes.py, and nothing
restates them (a second declaration citing the same SPEC section, a constant or a keyword default)."""
import ast
import dataclasses
import re
from collections import defaultdict
from pathlib import Path

from nao_ws import recipes

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = [p for pkg in ("supernet", "nao_ws", "controller", "benchmarks") for p in sorted((ROOT / pkg).glob("*.py"))]
RECIPES = (recipes.CnnSupernet, recipes.RnnSupernet, recipes.CnnFinal, recipes.RnnFinal)
FIELDS = {f.name for r in RECIPES for f in dataclasses.fields(r)}
NEUTRAL = (None, False, 0, 1.0)  # "off" values a function may default to: no head, no dropout, no clip ...
SECTIONS = ("3.1", "3.2", "5.1", "5.2")  # the recipes; SPEC 2's controller options belong to the controller driver
# `name = value` or `name: type = option(value` or `"name": value`, then a comment citing a SPEC section
DECLARATION = re.compile(r"""^\s*"?(?P<name>[A-Za-z_]\w*)"?\s*(?::[^=#]*)?[=:]\s*(?:option\()?\s*"""
                         r"""(?P<value>-?[\d.]+(?:e-?\d+)?|"[^"]*")[^#]*#.*SPEC (?P<section>\d+(?:\.\d+)?)""")


def test_the_recipes_are_the_sections_of_the_spec():
    assert [r.__doc__.split("(SPEC ")[1][:3] for r in RECIPES] == ["3.1", "3.2", "5.1", "5.2"]


def test_no_spec_value_is_declared_twice():
    seen = defaultdict(list)
    for path in PRODUCT:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = DECLARATION.match(line)
            if m:
                if m["section"] in SECTIONS:
                    seen[m["name"].lower(), m["section"]].append(f"{path.relative_to(ROOT)}:{n}")
    repeated = {key: where for key, where in seen.items() if len(where) > 1}
    assert not repeated
    assert len(seen) > 50  # the pattern does find the declarations


def test_no_constant_or_default_restates_a_recipe_field():
    found = []
    for path in PRODUCT:
        if path.name == "recipes.py":
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module constants named after a field, e.g. GRAD_CLIP
            targets = node.targets if isinstance(node, ast.Assign) else []
            found += [f"{path.name}: {t.id}" for t in targets if isinstance(t, ast.Name) and t.id.lower() in FIELDS]
        for node in ast.walk(tree):  # keyword defaults of a field's name other than "off"
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.posonlyargs + node.args.args
                pairs = list(zip(args[len(args) - len(node.args.defaults):], node.args.defaults))
                pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
                found += [f"{path.name}: {node.name}({a.arg}={ast.unparse(d)})" for a, d in pairs
                          if a.arg in FIELDS and not (isinstance(d, ast.Constant) and d.value in NEUTRAL)]
    assert not found
