"""Issue 29: the package's structure. No import circle between its modules: every ``import`` of the
package (at module level or inside a function, type-checking-only imports aside) is an edge, and the
graph must have no cycle."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path


def _modules() -> dict[str, Path]:
    """Every module of the installed package (``scgan_bench.baselines`` / ``.datasets`` live at the top of
    the repository and install under the package: found where the import system finds them)."""
    out: dict[str, Path] = {}
    for pkg in ("scgan_bench", "scgan_bench.baselines", "scgan_bench.datasets"):
        spec = importlib.util.find_spec(pkg)
        assert spec is not None and spec.submodule_search_locations, pkg
        base = Path(list(spec.submodule_search_locations)[0])
        for f in base.rglob("*.py"):
            parts = list(f.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([pkg, *parts])
            if pkg == "scgan_bench" and parts and parts[0] in ("baselines", "datasets"):
                continue   # (a copy there would be the installed mapping's)
            out[name] = f
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (type hints only, never run)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skip |= {id(n) for n in ast.walk(child)}
    return skip


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (``from P import m`` of a submodule ``m`` is an edge to
    ``P.m`` alone, as Python loads it)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                for a in node.names:
                    if f"{src}.{a.name}" in mods:
                        graph[name].add(f"{src}.{a.name}")
                    elif src in mods:
                        graph[name].add(src)
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_cycle():
    """The checker itself: a two-module and a three-module circle are found, a chain is not."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert len(graph) > 100 and "scgan_bench.run.pipeline" in graph and "scgan_bench.baselines.dfdnet" in graph
    found = cycles(graph)
    said = ["; ".join(f"{m} -> {', '.join(sorted(graph[m] & set(c)))}" for m in c) for c in found]
    assert not found, said


def test_a_library_run_takes_its_settings_from_its_config_and_leaves_the_environment_alone(tmp_path, monkeypatch):
    """run_benchmark with an explicit pixel limit, link policy and offline mode obeys each (a 40,000-pixel
    face refused at a 10,000 limit, a link out of the root followed, the weights manager offline while
    the run's methods run) and writes nothing to ``os.environ``; a second run in the same process with
    defaults gets the environment's settings, not the first run's."""
    import scgan_bench.run.pipeline as pipeline
    import os

    import numpy as np
    from PIL import Image

    from scgan_bench.assets import weights as W
    from scgan_bench.run.pipeline import RunConfig, run_benchmark

    from sb_testdata import rgb_face

    for k in ("SCGAN_BENCH_MAX_PIXELS", "SCGAN_BENCH_OFFLINE", "SCGAN_BENCH_FOLLOW_LINKS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SCGAN_BENCH_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_download(asset):
        raise AssertionError(f"{asset.name} downloaded")

    monkeypatch.setattr(W, "download", no_download)
    seen = []
    real_run_method = pipeline.run_method

    def spy(*a, **k):
        seen.append(W.offline())
        return real_run_method(*a, **k)

    monkeypatch.setattr(pipeline, "run_method", spy)
    root, outside = tmp_path / "faces", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    Image.fromarray(rgb_face(0, 64)).save(root / "small.png")
    Image.fromarray(np.asarray(Image.fromarray(rgb_face(1, 64)).resize((200, 200)))).save(root / "big.png")
    Image.fromarray(rgb_face(2, 64)).save(outside / "far.png")
    (root / "linked.png").symlink_to(outside / "far.png")
    before = dict(os.environ)

    def run(out: str, metrics: list[str], **settings):
        res = run_benchmark(RunConfig(datasets=["folder"], methods=["bicubic"], metrics=metrics, out=tmp_path / out,
                                      roots={"folder": root}, progress=False, **settings))
        scored = {r.split(",")[3] for r in (tmp_path / out / "results.csv").read_text().splitlines()[1:]}
        failed = {f.image_id: f.reason for f in res.failures}
        return res, scored, failed

    res, scored, failed = run("a", ["psnr"], max_pixels=10_000, follow_links=True, offline=True)
    assert scored == {"small", "linked"} and "40,000" in failed["big"] and "10,000" in failed["big"], failed
    assert seen == [True] and dict(os.environ) == before
    monkeypatch.setenv("SCGAN_BENCH_HOME", str(tmp_path / "home-b"))   # a fresh integrity lock for the link
    _, scored, failed = run("b", ["psnr"])
    assert scored == {"small", "big"} and "outside" in failed["linked"] and seen == [True, False], failed


def test_every_package_is_installed_and_described_and_the_public_entries_are_the_internal_objects():
    """Each subpackage of ``scgan_bench/`` is in setup.cfg's ``packages`` (a wheel would lack it otherwise)
    and has its line in README's layout; the stable public modules hand out the internal objects."""
    import configparser

    repo = Path(__file__).resolve().parents[1]
    subs = sorted(p.parent.name for p in (repo / "scgan_bench").glob("*/__init__.py"))
    assert {"cli", "run", "io", "assets", "plan", "reports"} <= set(subs)
    cfg = configparser.ConfigParser()
    cfg.read(repo / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    readme = (repo / "README.md").read_text()
    layout = readme[readme.index("## Repository layout"):readme.index("## Tests and benchmarks")]
    for sub in subs:
        assert f"scgan_bench.{sub}" in listed, f"setup.cfg [options] packages lacks scgan_bench.{sub}"
        assert f"\n      {sub}/ " in layout, f"README's layout has no line for scgan_bench/{sub}/"

    import scgan_bench.assets.weights as internal_weights
    import scgan_bench.pipeline as public_pipeline
    import scgan_bench.run.pipeline as internal_pipeline
    import scgan_bench.weights as public_weights

    for name in public_pipeline.__all__:
        assert getattr(public_pipeline, name) is getattr(internal_pipeline, name), name
    for name in public_weights.__all__:
        assert getattr(public_weights, name) is getattr(internal_weights, name), name
    assert {"RunConfig", "run_benchmark"} <= set(public_pipeline.__all__)
    assert {"Asset", "register_asset", "resolve", "load_state_dict", "WeightsError"} <= set(public_weights.__all__)
