"""
Tests for L{twisted_cluster.apploading}.
"""

import os
import sys

from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from tests.apps import simple
from twisted_cluster.apploading import AppLoadError, asFactory, checkApp, loadApp


class LoadAppTests(SynchronousTestCase):
    def test_resourceIsServedWithSite(self) -> None:
        factory = loadApp("tests.apps.simple.resource")
        self.assertIsInstance(factory, Site)
        self.assertIs(factory.resource, simple.resource)

    def test_colonSeparatesModuleFromAttribute(self) -> None:
        factory = loadApp("tests.apps.simple:resource")
        self.assertIs(factory.resource, simple.resource)

    def test_protocolFactoryIsServedAsIs(self) -> None:
        self.assertIs(loadApp("tests.apps.simple.factory"), simple.factory)

    def test_callableReturningResourceIsCalled(self) -> None:
        factory = loadApp("tests.apps.simple.makeResource")
        self.assertIsInstance(factory.resource, simple.PidPage)

    def test_resourceClassIsInstantiated(self) -> None:
        factory = loadApp("tests.apps.simple.PidPage")
        self.assertIsInstance(factory.resource, simple.PidPage)

    def test_oneArgumentCallableGetsTheContext(self) -> None:
        seen = []

        def app(context):
            seen.append(context)
            return Factory()

        asFactory(app, "app", context="the-context")
        self.assertEqual(seen, ["the-context"])

    def test_siteHasNoAccessLog(self) -> None:
        site = loadApp("tests.apps.simple.resource")
        site.log(None)  # no request needed: the access log does nothing

    def test_unknownModule(self) -> None:
        e = self.assertRaises(AppLoadError, loadApp, "nosuchmodule.resource")
        self.assertEqual(
            str(e), "cannot load app 'nosuchmodule.resource': no module named 'nosuchmodule'"
        )

    def test_unknownAttribute(self) -> None:
        e = self.assertRaises(AppLoadError, loadApp, "tests.apps.simple.nope")
        self.assertIn("has no attribute 'nope'", str(e))

    def test_moduleAloneIsNotAnApp(self) -> None:
        e = self.assertRaises(AppLoadError, loadApp, "tests.apps.simple")
        self.assertIn("that is a module", str(e))

    def test_attributeThatIsNotAnApp(self) -> None:
        e = self.assertRaises(AppLoadError, loadApp, "tests.apps.simple.notAnApp")
        self.assertIn("int object is not an IResource", str(e))
        self.assertRaises(AppLoadError, checkApp, 42, "x")

    def test_errorInsideTheModuleKeepsTheTraceback(self) -> None:
        e = self.assertRaises(AppLoadError, loadApp, "tests.apps.broken.resource")
        self.assertIn("RuntimeError: this app is broken on purpose", str(e))
        self.assertIn("Traceback", e.details)
        self.assertNotIn("\n", str(e))

    def test_malformedName(self) -> None:
        self.assertRaises(AppLoadError, loadApp, "")
        self.assertRaises(AppLoadError, loadApp, "a.")


class CallableResultTests(SynchronousTestCase):
    def test_callableReturningANonAppNamesWhatItReturned(self) -> None:
        """
        A callable whose result is not an app is blamed for its result, not
        for being a callable.
        """
        e = self.assertRaises(AppLoadError, asFactory, lambda: 42, "mod.returns42")
        self.assertEqual(
            str(e),
            "cannot load app 'mod.returns42': it returned int object, not an "
            "IResource or an IProtocolFactory",
        )


class UserTracebackTests(SynchronousTestCase):
    def writeModule(self, source: str) -> tuple[str, str]:
        """
        Write a module with C{source} in a fresh directory on C{sys.path}.

        @return: its name and its file.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        name = "usermod_" + os.path.basename(os.path.dirname(directory))
        path = os.path.join(directory, name + ".py")
        with open(path, "w") as f:
            f.write(source)
        self.patch(sys, "path", [directory] + sys.path)
        self.addCleanup(sys.modules.pop, name, None)
        return name, path

    def test_importErrorShowsOnlyTheUsersFrames(self) -> None:
        """
        The traceback of an error raised while importing the app's module
        has the user's frames and none of the import system's.
        """
        e = self.assertRaises(AppLoadError, loadApp, "tests.apps.broken.resource")
        self.assertNotIn("<frozen", e.details)
        self.assertNotIn("importlib", e.details)
        self.assertNotIn("apploading.py", e.details)
        self.assertIn("broken.py", e.details)
        self.assertTrue(e.details.endswith(
            "RuntimeError: this app is broken on purpose\n"
        ))

    def test_syntaxErrorShowsTheLineAndNoImportFrames(self) -> None:
        name, path = self.writeModule("x = (\n")
        e = self.assertRaises(AppLoadError, loadApp, f"{name}.x")
        self.assertNotIn("<frozen", e.details)
        self.assertIn(f'File "{path}", line 1', e.details)
        self.assertIn("SyntaxError", e.details)
        self.assertTrue(str(e).startswith(f"cannot load app '{name}.x': SyntaxError"))

    def test_missingImportInTheModuleShowsTheImportLine(self) -> None:
        name, path = self.writeModule("import no_such_module_of_the_user\n")
        e = self.assertRaises(AppLoadError, loadApp, f"{name}.app")
        self.assertEqual(
            e.details.splitlines(),
            [
                "Traceback (most recent call last):",
                f'  File "{path}", line 1, in <module>',
                "    import no_such_module_of_the_user",
                "ModuleNotFoundError: No module named 'no_such_module_of_the_user'",
            ],
        )
