"""Plugin discovery through real entry points, isolation of broken plugins, allow/block lists."""

from __future__ import annotations

import json
import os

import pytest

from ftcore import MethodSpec, hookimpl
from ftcore.contract.plugins import get_registry, register_plugin, unregister_plugin
from ftcore.errors import PluginError
from ftcore.testing.process import run_ft

SHIPPED = {"ftlora", "ftqlora", "ftfull", "ftinstruct", "ftmetrics", "ftlmeval"}

BROKEN_IMPORT = """
raise ImportError("this plugin needs a library that is not installed")
"""

BROKEN_HOOK = """
from ftcore import hookimpl

@hookimpl
def register_methods():
    raise RuntimeError("registration exploded")
"""

CLASHING = """
from ftcore import hookimpl, MethodSpec

@hookimpl
def register_methods():
    return [MethodSpec("full", "a second 'full'")]
"""

HEALTHY = """
from ftcore import hookimpl, MethodSpec

@hookimpl
def register_methods():
    return [MethodSpec("fakehealthy", "a healthy third-party method")]
"""

SIDE_EFFECT = """
import os, pathlib
pathlib.Path(os.environ["FT_TEST_MARKER"]).write_text("imported")
"""


def _listing(fake_site, *args, env=None):
    result = run_ft("plugins", "--json", *args, env={"PYTHONPATH": str(fake_site), **(env or {})})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_shipped_plugins_listed_with_versions():
    result = run_ft("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    names = {p["name"]: p for p in listing["plugins"]}
    assert set(names) >= SHIPPED
    for name in SHIPPED:
        assert names[name]["dist"] == name
        assert names[name]["version"]
    assert "lora" in names["ftlora"]["methods"]
    assert listing["failed"] == []


def test_broken_plugins_are_named_and_the_rest_keep_working(fake_site):
    fake_site.add("ft-broken-import", BROKEN_IMPORT, entry="broken_import")
    fake_site.add("ft-broken-hook", BROKEN_HOOK, entry="broken_hook")
    fake_site.add("ft-healthy", HEALTHY, entry="healthy")
    listing = _listing(fake_site)
    healthy = {p["name"] for p in listing["plugins"]}
    assert SHIPPED | {"healthy"} <= healthy
    failed = {p["name"]: p for p in listing["failed"]}
    assert set(failed) == {"broken_import", "broken_hook"}
    assert failed["broken_import"]["dist"] == "ft-broken-import"
    assert failed["broken_import"]["version"] == "1.0"
    assert "needs a library that is not installed" in failed["broken_import"]["error"]
    assert "registration exploded" in failed["broken_hook"]["error"]

    text = run_ft("plugins", env={"PYTHONPATH": str(fake_site)})
    assert text.returncode == 0
    assert "broken_import" in text.stdout and "FAILED" in text.stdout


def test_duplicate_method_name_is_an_error_naming_both_plugins(fake_site, tmp_path):
    # "aaclash" loads before ftfull; whatever the order, neither plugin silently owns "full".
    fake_site.add("ft-clash", CLASHING, entry="aaclash")
    listing = _listing(fake_site)
    assert {"aaclash", "ftfull"} <= {p["name"] for p in listing["plugins"]}
    clash = [c for c in listing["clashes"] if c["name"] == "full"][0]
    assert clash["kind"] == "method" and set(clash["plugins"]) == {"aaclash", "ftfull"}
    assert "ft-clash 1.0" in clash["error"] and "ftfull 0.1.0" in clash["error"]
    text = run_ft("plugins", env={"PYTHONPATH": str(fake_site)})
    assert "CLASH" in text.stdout and "'full'" in text.stdout

    config = tmp_path / "full.yaml"
    config.write_text("model: some/model\nmethod: full\ndata: {train: x.jsonl}\n")
    result = run_ft("config", "validate", str(config), env={"PYTHONPATH": str(fake_site)})
    assert result.returncode != 0
    line = result.stderr.strip().splitlines()[-1]
    assert "'full' is registered by" in line and "ft-clash 1.0" in line and "ftfull 0.1.0" in line
    # The other methods keep working.
    config.write_text("model: some/model\nmethod: lora\ndata: {train: x.jsonl}\n")
    assert run_ft("config", "validate", str(config), env={"PYTHONPATH": str(fake_site)}).returncode == 0


SYSTEM_EXIT = """
import sys
sys.exit(3)
"""

SYSTEM_EXIT_IN_HOOK = """
import sys
from ftcore import hookimpl

@hookimpl
def register_metrics():
    sys.exit("bye")
"""


def test_plugin_calling_sys_exit_is_isolated(fake_site, tmp_path):
    fake_site.add("ft-exits", SYSTEM_EXIT, entry="exits")
    fake_site.add("ft-exits-later", SYSTEM_EXIT_IN_HOOK, entry="exits_later")
    listing = _listing(fake_site)
    failed = {p["name"]: p for p in listing["failed"]}
    assert "SystemExit(3)" in failed["exits"]["error"]
    assert "SystemExit('bye')" in failed["exits_later"]["error"]
    assert {p["name"] for p in listing["plugins"]} >= SHIPPED
    config = tmp_path / "lora.yaml"
    config.write_text("model: some/model\nmethod: lora\ndata: {train: x.jsonl}\n")
    for args in (("config", "validate", str(config)), ("--debug", "config", "validate", str(config))):
        result = run_ft(*args, env={"PYTHONPATH": str(fake_site)})
        assert result.returncode == 0, result.stderr


SPECNAME = """
from ftcore import hookimpl, MethodSpec

@hookimpl(specname="register_methods")
def my_methods():
    return [MethodSpec("viaspecname", "registered under another function name")]
"""


def test_registration_goes_through_pluggy_specname(fake_site):
    fake_site.add("ft-specname", SPECNAME, entry="specname")
    listing = _listing(fake_site)
    assert [p for p in listing["plugins"] if p["name"] == "specname"][0]["methods"] == ["viaspecname"]


def test_work_hooks_go_to_the_owner_only(fresh_plugins):
    calls = []

    class Greedy:
        """A v1-style plugin that answers for every method name, as if it owned them all."""

        @hookimpl
        def register_methods(self):
            return [MethodSpec("greedy", "answers for everything")]

        @hookimpl
        def model_load_kwargs(self, method):
            calls.append(method)
            return {"hijacked": True}

    info = register_plugin(Greedy(), "aaa-greedy")
    try:
        registry = get_registry()
        assert registry.call("model_load_kwargs", "method", "lora", method="lora", config=None, options=None) is None
        assert registry.call("model_load_kwargs", "method", "greedy", method="greedy", config=None,
                             options=None) == {"hijacked": True}
        assert calls == ["greedy"]
        assert info.error is None
    finally:
        unregister_plugin("aaa-greedy")


def test_blocklist_applies_before_import(fake_site, tmp_path):
    marker = tmp_path / "marker"
    fake_site.add("ft-side-effect", SIDE_EFFECT, entry="side_effect")
    env = {"FT_TEST_MARKER": str(marker)}
    _listing(fake_site, env={**env, "FT_PLUGINS": "-side_effect"})
    assert not marker.exists()
    listing = _listing(fake_site, env=env)
    assert marker.exists()
    assert "side_effect" in {p["name"] for p in listing["plugins"]}


def test_allowlist_and_disable_option(fake_site):
    fake_site.add("ft-healthy", HEALTHY, entry="healthy")
    only = _listing(fake_site, env={"FT_PLUGINS": "ftlora,healthy"})
    assert {p["name"] for p in only["plugins"]} == {"ftcore", "ftlora", "healthy"}
    result = run_ft("--disable", "ftlora", "plugins", "--json", env={"PYTHONPATH": str(fake_site)})
    names = {p["name"] for p in json.loads(result.stdout)["plugins"]}
    assert "ftlora" not in names and "ftqlora" in names


def test_unknown_method_lists_installed_and_suggests(fresh_plugins):
    with pytest.raises(PluginError) as info:
        get_registry().method("lroa")
    message = str(info.value)
    assert "did you mean 'lora'" in message
    assert "qlora" in message and "full" in message


def test_in_process_plugin_registration_and_bad_names(fresh_plugins):
    class Plugin:
        @hookimpl
        def register_methods(self):
            return [MethodSpec("mine", "test method")]

    info = register_plugin(Plugin(), "mine-plugin")
    try:
        assert info.error is None
        assert get_registry().method("mine").summary == "test method"
    finally:
        unregister_plugin("mine-plugin")
    assert "mine" not in get_registry().methods
    with pytest.raises(ValueError, match="invalid method name"):
        MethodSpec("Bad Name")


def test_plugins_hooks_listing():
    result = run_ft("plugins", "--hooks")
    assert result.returncode == 0
    assert "setup_peft" in result.stdout


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_plugin_entry_modules_import_nothing_heavy(name):
    code = (
        f"import sys, importlib; importlib.import_module({name!r}); "
        "from ftcore.contract.plugins import get_registry; get_registry(); "
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'datasets', 'evaluate', 'bitsandbytes') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


FUTURE_API = """
from ftcore import hookimpl, MethodSpec

FTCORE_PLUGIN_API = 999

@hookimpl
def register_methods():
    return [MethodSpec("fromthefuture", "needs hooks this ftcore lacks")]
"""

CURRENT_API = """
from ftcore import hookimpl, MethodSpec, PLUGIN_API_VERSION

FTCORE_PLUGIN_API = PLUGIN_API_VERSION

@hookimpl
def register_methods():
    return [MethodSpec("current", "needs exactly this API")]
"""


def test_plugin_needing_a_newer_api_is_reported_not_loaded(fake_site):
    fake_site.add("ft-future", FUTURE_API, entry="future")
    fake_site.add("ft-current", CURRENT_API, entry="current")
    listing = _listing(fake_site)
    failed = {p["name"]: p for p in listing["failed"]}
    assert "needs plugin API 999" in failed["future"]["error"]
    assert "upgrade ftcore" in failed["future"]["error"]
    loaded = {p["name"]: p for p in listing["plugins"]}
    assert loaded["current"]["methods"] == ["current"]
    assert not any("fromthefuture" in p["methods"] for p in listing["plugins"])


def test_a_config_without_method_takes_the_method_ft_recommend_tries_first(fresh_plugins, tmp_path, monkeypatch):
    """ftcore names no method: the default is the installed one with the lowest MethodSpec.recommend."""
    from ftcore.config.schema import build_config
    from ftcore.errors import ConfigError

    raw = {"model": "m", "data": {"train": str(tmp_path / "train.jsonl")}}
    assert build_config(raw).method == "lora"  # ftlora's recommend=10 is the lowest of ft's plugins

    class Eager:
        @hookimpl
        def register_methods(self):
            return [MethodSpec("eager", "recommended before everything (test)", recommend=1)]

    register_plugin(Eager(), "eager")
    try:
        assert build_config(raw).method == "eager"
        assert build_config({**raw, "method": "full"}).method == "full"
    finally:
        unregister_plugin("eager")
    from ftcore.contract.plugins import reset_plugin_manager

    monkeypatch.setenv("FT_PLUGINS", "ftpairrank")  # only a method that takes no part in recommendations
    reset_plugin_manager()
    with pytest.raises(ConfigError, match="method: .*no default method is installed: name one"):
        build_config(raw)
