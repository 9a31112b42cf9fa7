"""Names a package loads on first use (PEP 562 module __getattr__), so that
a child that needs no connection imports no more than it uses."""
import importlib


def lazy_getattr(package_globals, table):
    """A module __getattr__ for the package whose globals are given: name ->
    its submodule in table, imported on first use and kept as a global."""
    package = package_globals["__name__"]

    def __getattr__(name):
        mod = table.get(name)
        if mod is None:
            raise AttributeError("module %r has no attribute %r" % (package, name))
        value = getattr(importlib.import_module("." + mod, package), name)
        package_globals[name] = value
        return value

    return __getattr__
