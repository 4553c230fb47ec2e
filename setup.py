from setuptools import find_packages, setup

setup(
    name="twisted-cluster",
    version="0.1.0",
    description="Node's cluster module for Twisted: one master, N workers, no lost connections.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["twisted_cluster", "twisted_cluster.*"])
    + ["twisted.plugins"],
    package_data={
        "twisted.plugins": ["twisted_cluster_plugin.py"],
        "twisted_cluster": ["py.typed"],
        "twisted_cluster._control": ["static/*"],
    },
    install_requires=["twisted>=22.10", "zope.interface", "attrs", "prometheus_client"],
    extras_require={
        # ssl: listeners (the workers do the TLS handshake).
        "tls": ["twisted[tls]"],
        # mypy: tests.test_typing checks that user code type-checks with it.
        "test": ["treq", "twisted[tls]", "cryptography", "mypy"],
        # python -m mypy (settings in mypy.ini).
        "typecheck": ["mypy", "mypy-zope"],
    },
    zip_safe=False,
)
