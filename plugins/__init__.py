"""First-party ppds plugins, registered through the `ppds` entry points like any third party.

``datasets``, ``generators``, ``metrics`` and ``attacks`` hold the plugins;
``common`` the public layer they share (classifiers, pixel units, the
diffusion recipe, …). A plugin imports ``common`` and its own package's
private modules, never another package's.
"""
