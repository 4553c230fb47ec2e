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
WORKER_RECYCLING: Final = "worker_recycling"
WORKER_ADDED: Final = "worker_added"
WORKER_REMOVED: Final = "worker_removed"
WORKER_CONTROL_FAILED: Final = "worker_control_failed"
PING_ANSWER_FAILED: Final = "ping_answer_failed"
RECYCLE_MEMORY_OFF: Final = "recycle_memory_off"

#: Operations refused or done, in the master.
ADD_REFUSED: Final = "add_refused"
REMOVE_REFUSED: Final = "remove_refused"
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

#: The app's part in the life cycle (either process).
HOOK_FAILED: Final = "hook_failed"
OBSERVER_FAILED: Final = "observer_failed"
APP_DRAINED: Final = "app_drained"
