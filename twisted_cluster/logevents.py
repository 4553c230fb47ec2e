"""
The stable name of every life-cycle event the cluster logs.

Each event the master writes about the cluster's life cycle carries a
C{cluster_event} field whose value is one of these names, beside the fields
that say whom it is about (C{worker_id}, C{worker_pid}, C{cause}, ...).
Filter, alert and test on them: the wording of a message may change between
releases, these names do not.

    jq 'select(.cluster_event == "worker_exited")' < cluster.log

A worker's pid is C{worker_pid} in every line about a worker: the master's
own lines and those it forwards from the worker.
"""

from typing import Final

#: Cluster-wide, in the master.
LISTENING: Final = "listening"
CLUSTER_STOPPING: Final = "cluster_stopping"
CLUSTER_FAILED: Final = "cluster_failed"
KILLING_NOW: Final = "killing_now"

#: One worker's life, in the master.
WORKER_QUEUED: Final = "worker_queued"
WORKER_STARTED: Final = "worker_started"
WORKER_SPAWN_FAILED: Final = "worker_spawn_failed"
WORKER_START_TIMEOUT: Final = "worker_start_timeout"
WORKER_APP_ERROR: Final = "worker_app_error"
WORKER_START_FAILING: Final = "worker_start_failing"
WORKER_READY: Final = "worker_ready"
WORKER_REPLACED: Final = "worker_replaced"
WORKER_REPLACEMENT_FAILED: Final = "worker_replacement_failed"
WORKER_EXITED: Final = "worker_exited"
WORKER_KILLED: Final = "worker_killed"
WORKER_HUNG: Final = "worker_hung"
WORKER_STACKS: Final = "worker_stacks"
WORKER_OUT_OF_MEMORY: Final = "worker_out_of_memory"
WORKER_RECYCLING: Final = "worker_recycling"
WORKER_ADDED: Final = "worker_added"
WORKER_REMOVED: Final = "worker_removed"
WORKER_CONTROL_FAILED: Final = "worker_control_failed"
PING_ANSWER_FAILED: Final = "ping_answer_failed"
RECYCLE_MEMORY_OFF: Final = "recycle_memory_off"

#: Signals, the master upgrade (SIGUSR2), log files and --reload.
QUIT_STOPPING: Final = "quit_stopping"
UPGRADE_STARTED: Final = "upgrade_started"
UPGRADE_REFUSED: Final = "upgrade_refused"
UPGRADE_FAILED: Final = "upgrade_failed"
UPGRADE_HANDED_OVER: Final = "upgrade_handed_over"
UPGRADE_DONE: Final = "upgrade_done"
UPGRADE_STOP_DEFERRED: Final = "upgrade_stop_deferred"
UPGRADE_STOP_CANCELLED: Final = "upgrade_stop_cancelled"
CONTROL_INHERIT_FAILED: Final = "control_inherit_failed"
LOG_REOPENED: Final = "log_reopened"
LOG_REOPEN_FAILED: Final = "log_reopen_failed"
WORKERS_REOPEN_ASKED: Final = "workers_reopen_asked"
RELOAD_WARNING: Final = "reload_warning"
RELOAD_WATCHING: Final = "reload_watching"
RELOAD_NOTHING: Final = "reload_nothing"
RELOAD_FAILED: Final = "reload_failed"
RELOAD_CHANGED: Final = "reload_changed"

#: Operations refused or done, in the master.
ADD_REFUSED: Final = "add_refused"
REMOVE_REFUSED: Final = "remove_refused"
KILL_REFUSED: Final = "kill_refused"
RESTART_REFUSED: Final = "restart_refused"
SHUTDOWN_REFUSED: Final = "shutdown_refused"
SHUTDOWN_REQUESTED: Final = "shutdown_requested"
ROLLOUT_STARTED: Final = "rollout_started"
ROLLOUT_STEP: Final = "rollout_step"
ROLLOUT_DONE: Final = "rollout_done"
ROLLOUT_ABORTED: Final = "rollout_aborted"

#: The dispatch path, in the master.
QUEUE_RELEASED: Final = "queue_released"
QUEUE_FULL: Final = "queue_full"
WORKER_STALLED: Final = "worker_stalled"
WORKER_UNSTALLED: Final = "worker_unstalled"
WORKER_FULL: Final = "worker_full"
WORKER_ROOM_AGAIN: Final = "worker_room_again"
WORKERS_AT_CAPACITY: Final = "workers_at_capacity"
WORKER_ROOM_FOR_CONNECTIONS: Final = "worker_room_for_connections"
CONNECTIONS_CLOSED: Final = "connections_closed"
CONNECTIONS_REDISPATCHED: Final = "connections_redispatched"
ACCEPT_FAILING: Final = "accept_failing"

#: The control plane, in the master.
CONTROL_LISTENING: Final = "control_listening"
CONTROL_TOKEN_WRITTEN: Final = "control_token_written"
CONTROL_OPERATION: Final = "control_operation"
CONTROL_OPERATION_FAILED: Final = "control_operation_failed"
CONTROL_REFUSED: Final = "control_refused"
RELAY_REFUSED: Final = "relay_refused"
APP_METRICS_STALE: Final = "app_metrics_stale"
APP_METRICS_REFUSED: Final = "app_metrics_refused"
APP_METRICS_CONFLICT: Final = "app_metrics_conflict"

#: In a worker (its events reach the master's log with worker_id and
#: worker_pid), or where an app's responder runs.
CONTROL_CALL_FAILED: Final = "control_call_failed"
CONTROL_BOX_TOO_LARGE: Final = "control_box_too_large"
ADOPTION_EXHAUSTED: Final = "adoption_exhausted"
ADOPTION_RESUMED: Final = "adoption_resumed"
ADOPTION_RESET: Final = "adoption_reset"
APP_CONNECTION_FAILED: Final = "app_connection_failed"
PROXY_HEADER_REFUSED: Final = "proxy_header_refused"
RESPONDER_FAILED: Final = "responder_failed"
RESPONDER_RAISED: Final = "responder_raised"
APP_METRICS_FAILED: Final = "app_metrics_failed"
LOG_REOPEN_APP_FAILED: Final = "log_reopen_app_failed"

#: The app's part in the life cycle (either process).
HOOK_FAILED: Final = "hook_failed"
OBSERVER_FAILED: Final = "observer_failed"
APP_DRAINED: Final = "app_drained"
