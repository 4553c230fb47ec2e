"""
Tests for L{twisted_cluster.apploading}.
"""

from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from twisted_cluster.apploading import AppLoadError, asFactory, checkApp, loadApp
from tests.apps import simple


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
