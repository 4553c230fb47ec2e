"""
A log observer factory for C{twistd --logger}: JSON events on stdout, the
same format C{twist --log-format=json} writes, so tests read both alike.
"""

import sys

from twisted.logger import jsonFileLogObserver


def observer():
    return jsonFileLogObserver(sys.stdout)
