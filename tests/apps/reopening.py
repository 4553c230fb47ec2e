"""
An app that hears of SIGUSR1: each worker logs an event (field
C{reopened_by}: its worker id) when the master tells it to reopen its logs,
as an app with its own access log would reopen that file.
"""

from twisted.logger import Logger

from tests.apps.simple import PidPage

log = Logger()


def resource(context):
    context.onReopenLogs(
        lambda: log.info("worker {reopened_by} reopens its files",
                         reopened_by=context.workerId)
    )
    return PidPage()
