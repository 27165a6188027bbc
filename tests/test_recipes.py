"""Each SPEC value is declared once in code: the training recipes live in nao_ws/recipes.py, the controller's
values (SPEC 2) in controller/config.py, and nothing restates them (a second declaration citing the same SPEC
section, a constant or a keyword default, a command option that repeats a controller preset)."""
import ast
import dataclasses
import re
from collections import defaultdict
from pathlib import Path

from controller import config as ctrl_config
from nao_ws import recipes, search, standalone

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = [p for pkg in ("supernet", "nao_ws", "controller", "benchmarks") for p in sorted((ROOT / pkg).glob("*.py"))]
RECIPES = (recipes.CnnSupernet, recipes.RnnSupernet, recipes.CnnFinal, recipes.RnnFinal)
FIELDS = {f.name for r in RECIPES for f in dataclasses.fields(r)}
NEUTRAL = (None, False, 0, 1.0)  # "off" values a function may default to: no head, no dropout, no clip ...
CONTROLLER = ROOT / "controller" / "config.py"  # the one home of SPEC 2's values
# `name = value`, `name: type = option(value`, `name: type = field(default=value` or `"name": value`, then a
# comment citing a SPEC section
DECLARATION = re.compile(r"""^\s*"?(?P<name>[A-Za-z_]\w*)"?\s*(?::[^=#]*)?[=:]\s*(?:option\(|field\(default=)?\s*"""
                         r"""(?P<value>-?[\d.]+(?:e-?\d+)?|"[^"]*")[^#]*#.*SPEC (?P<section>\d+(?:\.\d+)?)""")


def test_the_recipes_are_the_sections_of_the_spec():
    assert [r.__doc__.split("(SPEC ")[1][:3] for r in RECIPES] == ["3.1", "3.2", "5.1", "5.2"]


def _declarations() -> dict:
    """(name, SPEC section) -> where a line declares it."""
    seen = defaultdict(list)
    for path in PRODUCT:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = DECLARATION.match(line)
            if m:
                seen[m["name"].lower(), m["section"]].append((path, n))
    return seen


def test_no_spec_value_is_declared_twice():
    seen = _declarations()
    repeated = {key: where for key, where in seen.items() if len(where) > 1}
    assert not repeated
    assert len(seen) > 80  # the pattern does find the declarations


def test_spec_2_values_are_declared_in_the_controller_config_only():
    spec2 = [where for (_, section), wheres in _declarations().items() if section.split(".")[0] == "2" for where in wheres]
    elsewhere = [f"{path.relative_to(ROOT)}:{n}" for path, n in spec2 if path != CONTROLLER]
    assert not elsewhere
    assert len(spec2) > 15  # the controller's own declarations are found


def test_controller_options_of_the_commands_are_the_controller_presets():
    """The searches' K, new architectures and controller epochs come from the space's controller preset."""
    for space, cfg in (("cnn-ws", search.config_class("cifar10")()), ("rnn", search.config_class("ptb")()),
                       ("cnn", standalone.Config())):
        _, train, generate = ctrl_config.preset(space)
        assert (cfg.seeds, cfg.controller_epochs) == (generate.num_seeds, train.epochs), space
    assert standalone.Config().new_per_round == ctrl_config.preset("cnn")[2].num_new
    assert search.CNN_PRESETS["ref-pt"]["new_per_iter"] == ctrl_config.preset("cnn-ws")[2].num_new


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
