"""Each value of the reference (docs/reference.md) is declared once in code: the training recipes live in
nao_ws/config/recipes.py, the controller's values (reference §2) in controller/config.py, and nothing restates
them (a second declaration citing the same section, a constant or a keyword default, a command option that
repeats a controller preset)."""
import ast
import dataclasses
import re
from collections import defaultdict
from pathlib import Path

from controller import config as ctrl_config
from nao_ws.config import recipes
from nao_ws.config.options import resolve
from nao_ws.search import options

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = [p for pkg in ("supernet", "nao_ws", "controller", "benchmarks") for p in sorted((ROOT / pkg).rglob("*.py"))]
RECIPES = (recipes.CnnSupernet, recipes.RnnSupernet, recipes.CnnFinal, recipes.RnnFinal)
FIELDS = {f.name for r in RECIPES for f in dataclasses.fields(r)}
NEUTRAL = (None, False, 0, 1.0)  # "off" values a function may default to: no head, no dropout, no clip ...
CONTROLLER = ROOT / "controller" / "config.py"  # the one home of reference §2's values
# `name = value`, `name: type = option(value`, `name: type = field(default=value` or `"name": value`, then a
# comment citing a section of the reference
DECLARATION = re.compile(r"""^\s*"?(?P<name>[A-Za-z_]\w*)"?\s*(?::[^=#]*)?[=:]\s*(?:option\(|field\(default=)?\s*"""
                         r"""(?P<value>-?[\d.]+(?:e-?\d+)?|"[^"]*")[^#]*#.*reference §(?P<section>\d+(?:\.\d+)?)""")


def test_the_recipes_are_the_sections_of_the_reference():
    assert [r.__doc__.split("(reference §")[1][:3] for r in RECIPES] == ["3.1", "3.2", "5.1", "5.2"]
    assert (ROOT / "docs" / "reference.md").is_file()


def _declarations() -> dict:
    """(name, section) -> where a line declares it."""
    seen = defaultdict(list)
    for path in PRODUCT:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = DECLARATION.match(line)
            if m:
                seen[m["name"].lower(), m["section"]].append((path, n))
    return seen


def test_no_value_of_the_reference_is_declared_twice():
    seen = _declarations()
    repeated = {key: where for key, where in seen.items() if len(where) > 1}
    assert not repeated
    assert len(seen) > 80  # the pattern does find the declarations


def test_controller_values_are_declared_in_the_controller_config_only():
    spec2 = [where for (_, section), wheres in _declarations().items() if section.split(".")[0] == "2" for where in wheres]
    elsewhere = [f"{path.relative_to(ROOT)}:{n}" for path, n in spec2 if path != CONTROLLER]
    assert not elsewhere
    assert len(spec2) > 15  # the controller's own declarations are found


def _paper(task, space, benchmark=None):
    cls, presets, base = options.config_for(task, space, benchmark)
    return resolve(cls, presets, "paper", None, {"task": task}, base=base)


def test_controller_options_of_the_searches_are_the_controller_presets():
    """The searches' K, controller epochs and new architectures per round come from the space's controller preset."""
    for task, space in (("cifar10", "cnn-ws"), ("ptb", "rnn"), ("cifar10", "cnn"), ("cifar10", "nb201")):
        _, train, generate = ctrl_config.preset(space)
        cfg = _paper(task, space)
        assert (cfg.seeds, cfg.controller_epochs) == (generate.num_seeds, train.epochs), space
    assert _paper("cifar10", "cnn").new_per_round == ctrl_config.preset("cnn")[2].num_new
    assert options.CNN_PRESETS["ref-pt"]["new_per_iter"] == ctrl_config.preset("cnn-ws")[2].num_new


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


def test_no_product_file_cites_a_file_outside_the_repository():
    """Code and docs cite docs/ or the paper; the team's notes outside the repository are no source for a user.
    README names the tests' default real-data folder in its last section only."""
    readme = (ROOT / "README.md").read_text().split("## Real data for the tests")[0]
    texts = {f"{p.relative_to(ROOT)}": p.read_text() for p in PRODUCT + sorted((ROOT / "docs").glob("*.md"))
             if p.name != "paths.py"}  # benchmarks/paths.py: the tests' folder, as README's last section says
    cited = [name for name, text in {**texts, "README.md": readme}.items()
             if re.search(r"SPEC\.md|DESIGN\.md|papers/|\.\./shared", text)]
    assert not cited


def test_the_wheel_holds_every_module_and_asset():
    """setup.py packages what find_packages finds: a folder of modules without __init__.py would be left out
    of the wheel (its import then fails only once installed), and so would an asset no pattern names."""
    from setuptools import find_packages

    packages = set(find_packages(str(ROOT), include=["nao_ws*", "supernet*", "controller*"]))
    folders = {str(p.parent.relative_to(ROOT)).replace("/", ".") for pkg in ("nao_ws", "supernet", "controller")
               for p in (ROOT / pkg).rglob("*.py")}
    assert folders <= packages
    setup = (ROOT / "setup.py").read_text()
    patterns = re.search(r'"nao_ws\.data": \[(.*?)\]', setup).group(1)
    for asset in (ROOT / "nao_ws" / "data" / "assets").iterdir():
        assert any(asset.match(p.strip(' "')) for p in patterns.split(",")), asset.name
